"""infra/ci.yml: who can release, and that nobody else can.

Linted with the other templates (tests/infra/test_templates.py); the trust
policy, the CI role's permissions and the deny policy are asserted from the
parsed template, each rule shown to
fail on a mutated copy. IAM itself is not emulated here (moto does not evaluate
policy conditions), so the rules are checked as AWS documents them:
GitHub's OIDC `sub` claim forms (GitHub Docs, "About security hardening with
OpenID Connect": `repo:<owner>/<repo>:ref:refs/heads/<branch>` and
`repo:<owner>/<repo>:environment:<name>`), and `aws:PrincipalArn`, which for a
role session is the role's ARN (IAM User Guide, "AWS global condition context
keys").
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from cfnlint.decode import decode

from sbcntrctl.release.images import IMAGES
from tests.support import ROOT

TEMPLATE = ROOT / "infra" / "ci.yml"
SCP = ROOT / "infra" / "scp" / "release-only-through-pipeline.json"
RELEASE_ACTIONS = {
    "ecr:PutImage",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecs:RegisterTaskDefinition",
    "ecs:UpdateService",
    "ecs:CreateService",
}
# The CI role pushes to the repository of every image the release builds, and no other.
REPOSITORIES = {image.repository for image in IMAGES.values()}


def template() -> dict[str, Any]:
    parsed, problems = decode(str(TEMPLATE))
    assert not problems, problems
    return json.loads(json.dumps(parsed))


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return list(policy["Statement"])


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def text(value: Any) -> str:
    """A Fn::Sub string or a plain string, as written."""
    return value["Fn::Sub"] if isinstance(value, dict) and "Fn::Sub" in value else str(value)


# --- the rules


def trust_problems(t: dict[str, Any]) -> list[str]:
    """Only this repository's main branch and its stg/prod environments, exactly."""
    doc = t["Resources"]["CiRole"]["Properties"]["AssumeRolePolicyDocument"]
    problems = []
    for st in statements(doc):
        if st["Action"] != "sts:AssumeRoleWithWebIdentity" or "Federated" not in st["Principal"]:
            problems.append("the role is assumed through the OIDC provider only")
        condition = st.get("Condition", {})
        if set(condition) != {"StringEquals"}:
            problems.append("exact matches only (StringLike would admit any branch)")
        equals = condition.get("StringEquals", {})
        if equals.get("token.actions.githubusercontent.com:aud") != "sts.amazonaws.com":
            problems.append("audience must be sts.amazonaws.com")
        subjects = {text(s) for s in as_list(equals.get("token.actions.githubusercontent.com:sub"))}
        expected = {
            "repo:${GitHubRepository}:ref:refs/heads/main",
            "repo:${GitHubRepository}:environment:stg",
            "repo:${GitHubRepository}:environment:prod",
        }
        if subjects != expected:
            problems.append(f"subjects {sorted(subjects)} != {sorted(expected)}")
    return problems


def permission_problems(t: dict[str, Any]) -> list[str]:
    """No wildcard actions; writes scoped; roles passed only to ECS tasks."""
    problems = []
    for policy in t["Resources"]["CiRole"]["Properties"]["Policies"]:
        for st in statements(policy["PolicyDocument"]):
            if st["Effect"] != "Allow":
                continue
            actions = as_list(st["Action"])
            resources = [text(r) for r in as_list(st["Resource"])]
            if any(a == "*" or a.endswith(":*") for a in actions):
                problems.append(f"{st['Sid']}: wildcard action")
            if "ecr:PutImage" in actions:
                repos = {r.rsplit("/", 1)[1] for r in resources}
                if repos != REPOSITORIES:
                    problems.append(f"{st['Sid']}: push to {sorted(repos)}")
            if "ecs:UpdateService" in actions and any(
                not re.search(r":service/sbcntr-\*/sbcntr-(frontend|backend)$", r)
                for r in resources
            ):
                problems.append(f"{st['Sid']}: services beyond the two")
            if "iam:PassRole" in actions:
                passed = st.get("Condition", {}).get("StringEquals", {})
                if passed.get("iam:PassedToService") != "ecs-tasks.amazonaws.com":
                    problems.append("PassRole must be limited to ecs-tasks.amazonaws.com")
                role = r":role/sbcntr-\*-(frontend|backend)-(task|execution)$"
                if any(not re.search(role, r) for r in resources):
                    problems.append("PassRole beyond the task and execution roles")
    return problems


def deny_problems(t: dict[str, Any]) -> list[str]:
    """Everyone but the CI role is denied every release action."""
    doc = t["Resources"]["ReleaseOnlyThroughPipeline"]["Properties"]["PolicyDocument"]
    problems = []
    denied = set()
    for st in statements(doc):
        if st["Effect"] != "Deny" or st["Resource"] != "*":
            problems.append("a Deny on every resource")
            continue
        exempt = st.get("Condition", {}).get("ArnNotEquals", {}).get("aws:PrincipalArn")
        if "CiRole" not in json.dumps(exempt):
            problems.append("the exemption must be the CI role's ARN")
        denied |= set(as_list(st["Action"]))
    if missing := RELEASE_ACTIONS - denied:
        problems.append(f"not denied: {sorted(missing)}")
    return problems


@pytest.mark.parametrize("rule", [trust_problems, permission_problems, deny_problems])
def test_the_template_keeps_the_rule(rule: Any) -> None:
    assert rule(template()) == []


def test_the_scp_denies_what_the_policy_denies() -> None:
    scp = json.loads(SCP.read_text(encoding="utf-8"))
    policy = template()["Resources"]["ReleaseOnlyThroughPipeline"]["Properties"]
    assert {a for st in scp["Statement"] for a in st["Action"]} == {
        a for st in policy["PolicyDocument"]["Statement"] for a in st["Action"]
    }
    exempt = scp["Statement"][0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    assert "arn:aws:iam::*:role/sbcntr-ci-release" in exempt
    assert template()["Resources"]["CiRole"]["Properties"]["RoleName"] == "sbcntr-ci-release"


def test_the_rules_fail_on_broken_copies() -> None:
    role = ("Resources", "CiRole", "Properties")

    def broken(edit: Any) -> dict[str, Any]:
        t = copy.deepcopy(template())
        edit(t)
        return t

    def any_branch(t: dict[str, Any]) -> None:
        st = t[role[0]][role[1]][role[2]]["AssumeRolePolicyDocument"]["Statement"][0]
        st["Condition"]["StringLike"] = st["Condition"].pop("StringEquals")

    def feature_branch(t: dict[str, Any]) -> None:
        st = t[role[0]][role[1]][role[2]]["AssumeRolePolicyDocument"]["Statement"][0]
        subs = st["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"]
        subs.append({"Fn::Sub": "repo:${GitHubRepository}:ref:refs/heads/dev"})

    def push_anywhere(t: dict[str, Any]) -> None:
        policy = t[role[0]][role[1]][role[2]]["Policies"][0]["PolicyDocument"]
        push = next(s for s in policy["Statement"] if s["Sid"] == "PushTheReleaseRepositories")
        push["Resource"].append({"Fn::Sub": "arn:aws:ecr:r:a:repository/other"})

    def pass_any_role(t: dict[str, Any]) -> None:
        policy = t[role[0]][role[1]][role[2]]["Policies"][0]["PolicyDocument"]
        passrole = next(s for s in policy["Statement"] if s["Sid"] == "PassOnlyTheTaskRolesToEcs")
        del passrole["Condition"]

    def allow_put_image(t: dict[str, Any]) -> None:
        doc = t["Resources"]["ReleaseOnlyThroughPipeline"]["Properties"]["PolicyDocument"]
        doc["Statement"][0]["Action"].remove("ecr:PutImage")

    assert trust_problems(broken(any_branch))
    assert trust_problems(broken(feature_branch))
    assert permission_problems(broken(push_anywhere))
    assert permission_problems(broken(pass_any_role))
    assert deny_problems(broken(allow_put_image))
