"""infra/ci.yml: who can release, with which rights, and that nobody else can.

IAM itself is not emulated (moto evaluates no policy), so the template's roles
are resolved and evaluated as AWS documents them (tests/infra/iam.py):

- GitHub's OIDC ``sub`` claim (GitHub Docs, "OpenID Connect reference",
  subject claims): ``repo:<owner>/<repo>:ref:refs/heads/<branch>`` for a job
  outside an environment, ``repo:<owner>/<repo>:environment:<name>`` for a job
  in one (no branch in it: the environment's deployment branch rule is what
  limits the branches, docs/release.md);
- every call the release makes and what AWS authorizes for it
  (tests/infra/release_permissions.py, one row per call with its documentation
  page): the roles allow every row, and nothing no row needs;
- ``aws:PrincipalArn`` of a role session is the role's ARN (IAM User Guide,
  "AWS global condition context keys") for the deny policy and the SCP.

Each rule is shown to fail on a mutated copy of the template.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.infra import release_permissions as table
from tests.infra.cfn import resolve
from tests.infra.cfn import template as load
from tests.infra.iam import allows, arn_pattern, as_list, can_assume, condition_holds
from tests.support import ROOT

SCP = ROOT / "infra" / "scp" / "release-only-through-pipeline.json"
REPOSITORY = "octo/sbcntr"
PROVIDER = f"arn:aws:iam::{table.ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
ENVIRONMENTS = ("stg", "prod")
# Role -> its logical id in infra/ci.yml, and its name.
ROLES = {"push": "PushRole", "stg": "StgDeployRole", "prod": "ProdDeployRole"}
ROLE_NAMES = {
    "push": "sbcntr-ci-push",
    "stg": "sbcntr-ci-deploy-stg",
    "prod": "sbcntr-ci-deploy-prod",
}
BREAK_GLASS = "sbcntr-break-glass"
# What only the pipeline may do (the deny policy and the SCP).
RELEASE_ACTIONS = {
    "ecr:PutImage",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:BatchDeleteImage",
    "ecs:RegisterTaskDefinition",
    "ecs:UpdateService",
    "ecs:CreateService",
    "ecs:DeleteService",
    "ecs:StopServiceDeployment",
}

Template = dict[str, Any]
Role = tuple[dict[str, Any], list[dict[str, Any]]]  # trust policy, identity policies


def template() -> Template:
    return load("ci")


def names(*, break_glass: str = "") -> dict[str, Any]:
    """The template's names as one account would resolve them."""
    return {
        "AWS::Partition": "aws",
        "AWS::Region": table.REGION,
        "AWS::AccountId": table.ACCOUNT,
        "GitHubRepository": REPOSITORY,
        "GitHubOidcProvider": PROVIDER,
        "BreakGlassRoleArn": break_glass,
        "Condition:MakeOidcProvider": True,
        "Condition:HasBreakGlass": bool(break_glass),
        **{
            f"{lid}.Arn": f"arn:aws:iam::{table.ACCOUNT}:role/{ROLE_NAMES[k]}"
            for k, lid in ROLES.items()
        },
    }


def roles(t: Template) -> dict[str, Role]:
    found = {}
    for key, logical_id in ROLES.items():
        props = resolve(t["Resources"][logical_id]["Properties"], names())
        found[key] = (
            props["AssumeRolePolicyDocument"],
            [p["PolicyDocument"] for p in props["Policies"]],
        )
    return found


def claims(subject: str, audience: str = "sts.amazonaws.com") -> dict[str, str]:
    return {
        "token.actions.githubusercontent.com:sub": subject,
        "token.actions.githubusercontent.com:aud": audience,
    }


def assumable_by(t: Template, subject: str, audience: str = "sts.amazonaws.com") -> set[str]:
    """The roles a token with ``subject`` can assume."""
    return {
        key
        for key, (trust, _) in roles(t).items()
        if can_assume(trust, PROVIDER, claims(subject, audience))
    }


def rows_of(key: str) -> list[tuple[table.Call, tuple[table.Need, ...]]]:
    """The calls role ``key`` makes, with their needs for its environment."""
    if key == "push":
        return [(c, c.needs) for c in table.CALLS if c.role == "push"]
    return [(c, c.at(key)) for c in table.CALLS if c.role == "deploy"]


def denied(policies: list[dict[str, Any]], needs: tuple[table.Need, ...]) -> list[table.Need]:
    return [n for n in needs if not allows(policies, n.action, n.resource, n.context)]


# --- the rules


def trust_problems(t: Template) -> list[str]:
    """main -> the push role only; a job in stg/prod -> that environment's deploy role only;
    any other subject (a branch, a pull request, another repository), or audience, -> none."""
    expected = {
        f"repo:{REPOSITORY}:ref:refs/heads/main": {"push"},
        f"repo:{REPOSITORY}:environment:stg": {"stg"},
        f"repo:{REPOSITORY}:environment:prod": {"prod"},
        f"repo:{REPOSITORY}:ref:refs/heads/feature": set(),
        f"repo:{REPOSITORY}:ref:refs/heads/main-hotfix": set(),
        f"repo:{REPOSITORY}:pull_request": set(),
        f"repo:{REPOSITORY}:environment:dev": set(),
        "repo:someone/fork:environment:prod": set(),
        "repo:someone/fork:ref:refs/heads/main": set(),
    }
    problems = [
        f"{subject} assumes {sorted(got)}, expected {sorted(want)}"
        for subject, want in expected.items()
        if (got := assumable_by(t, subject)) != want
    ]
    if wrong := assumable_by(t, f"repo:{REPOSITORY}:environment:prod", "sigstore"):
        problems.append(f"audience sigstore assumes {sorted(wrong)}")
    return problems


def gaps(t: Template) -> list[str]:
    """Every action AWS checks for a call of the release, which the role does not allow."""
    found = roles(t)
    return [
        f"{key}: {call.call} needs {need.action} on {need.resource} ({call.doc})"
        for key, (_, policies) in found.items()
        for call, needs in rows_of(key)
        for need in denied(policies, needs)
    ]


def excess(t: Template) -> list[str]:
    """Every (action, resource) a role allows that no call of the table needs."""
    problems = []
    for key, (_, policies) in roles(t).items():
        needs = [n for _, ns in rows_of(key) for n in ns]
        for policy in policies:
            for st in as_list(policy["Statement"]):
                if st["Effect"] != "Allow":
                    continue
                for action in as_list(st["Action"]):
                    for resource in as_list(st["Resource"]):
                        if not any(
                            arn_pattern(action).fullmatch(n.action)
                            and arn_pattern(resource).fullmatch(n.resource)
                            and condition_holds(st.get("Condition", {}), n.context)
                            for n in needs
                        ):
                            problems.append(f"{key} {st.get('Sid')}: {action} on {resource}")
    return problems


def separation_problems(t: Template) -> list[str]:
    """A deploy role writes nothing of the other environment; the push role deploys
    nothing; the deploy roles push nothing."""
    found = roles(t)
    problems = []
    for call in table.CALLS:
        if not call.writes or call.needs[0].action in table.NOT_SCOPABLE_BY_ENVIRONMENT:
            continue
        if call.role == "deploy":
            for key in ENVIRONMENTS:
                for other in (*ENVIRONMENTS, "push"):
                    if other == key:
                        continue
                    if not denied(found[other][1], call.at(key)):
                        problems.append(f"{other} can {call.call} in {key}")
        else:
            problems += [
                f"{key} can {call.call}"
                for key in ENVIRONMENTS
                if not denied(found[key][1], call.needs)
            ]
    return problems


def deny_problems(t: Template, break_glass: str = "") -> list[str]:
    """Everyone but the pipeline's roles (and the break-glass role) is denied every
    release action; the pipeline's roles are not."""
    policy = resolve(
        t["Resources"]["ReleaseOnlyThroughPipeline"]["Properties"]["PolicyDocument"],
        names(break_glass=break_glass),
    )
    exempt = [f"arn:aws:iam::{table.ACCOUNT}:role/{n}" for n in ROLE_NAMES.values()]
    if break_glass:
        exempt.append(break_glass)
    someone = f"arn:aws:iam::{table.ACCOUNT}:role/Admin"
    problems = []
    for action in sorted(RELEASE_ACTIONS):
        anything = f"{table.ECS}:service/sbcntr-prod/sbcntr-backend"
        grant = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        if allows([grant, policy], action, anything, {"aws:PrincipalArn": someone}):
            problems.append(f"{action} is not denied to {someone}")
        problems += [
            f"{action} is denied to {arn}"
            for arn in exempt
            if not allows([grant, policy], action, anything, {"aws:PrincipalArn": arn})
        ]
    return problems


RULES: tuple[Callable[[Template], list[str]], ...] = (
    trust_problems,
    gaps,
    excess,
    separation_problems,
    deny_problems,
)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_the_template_keeps_the_rule(rule: Callable[[Template], list[str]]) -> None:
    assert rule(template()) == []


def test_the_break_glass_role_is_exempt_when_given() -> None:
    assert deny_problems(template(), f"arn:aws:iam::{table.ACCOUNT}:role/{BREAK_GLASS}") == []


def test_every_row_names_its_documentation_and_the_table_covers_first_deploys() -> None:
    assert all(call.doc for call in table.CALLS)
    calls = {c.call for c in table.CALLS}
    for first in (
        "ecs:CreateService sbcntr-backend (first deploy, tags)",
        "application-autoscaling:RegisterScalableTarget sbcntr-backend (the first one)",
        "application-autoscaling:PutScalingPolicy sbcntr-backend (target tracking)",
    ):
        assert first in calls


def test_a_call_without_a_row_is_named() -> None:
    """tests/tools/test_deploy_migrate.py records a first release deploy on moto and
    requires a row for every call it made; a call no row makes is named."""
    assert table.uncovered(["ecs:CreateService", "ecs:DeleteService"]) == ["ecs:DeleteService"]
    assert table.uncovered(["ecr:GetAuthorizationToken"], role="push") == []


def test_the_scp_denies_what_the_policy_denies_and_exempts_the_same_roles() -> None:
    """The SCP cannot take a parameter: it names the roles, and the templates accept
    only the break-glass role's documented name."""
    scp = json.loads(SCP.read_text(encoding="utf-8"))
    policy = template()["Resources"]["ReleaseOnlyThroughPipeline"]["Properties"]["PolicyDocument"]
    assert {a for st in scp["Statement"] for a in st["Action"]} == {
        a for st in policy["Statement"] for a in st["Action"]
    }
    exempt = set(scp["Statement"][0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"])
    assert exempt == {f"arn:aws:iam::*:role/{n}" for n in [*ROLE_NAMES.values(), BREAK_GLASS]}
    t = template()
    for key, logical_id in ROLES.items():
        assert t["Resources"][logical_id]["Properties"]["RoleName"] == ROLE_NAMES[key]
    for stack in ("ci", "registry"):
        pattern = re.compile(load(stack)["Parameters"]["BreakGlassRoleArn"]["AllowedPattern"])
        assert pattern.match(f"arn:aws:iam::{table.ACCOUNT}:role/{BREAK_GLASS}")
        assert pattern.match("")
        assert not pattern.match(f"arn:aws:iam::{table.ACCOUNT}:role/incident")


# --- each rule fails on a broken copy


def _edit(edit: Callable[[Template], None]) -> Template:
    t = copy.deepcopy(template())
    edit(t)
    return t


def _statement(t: Template, role: str, sid: str) -> dict[str, Any]:
    policy = t["Resources"][ROLES[role]]["Properties"]["Policies"][0]["PolicyDocument"]
    return next(s for s in policy["Statement"] if s["Sid"] == sid)


def _subjects(t: Template, role: str) -> dict[str, Any]:
    trust = t["Resources"][ROLES[role]]["Properties"]["AssumeRolePolicyDocument"]
    return dict(trust["Statement"][0]["Condition"])


def test_a_removed_action_is_a_gap_naming_the_call_and_its_page() -> None:
    def no_tag_on_create(t: Template) -> None:
        _statement(t, "stg", "TagOnCreate")["Condition"]["StringEquals"]["ecs:CreateAction"] = [
            "RegisterTaskDefinition"
        ]

    def no_alarms(t: Template) -> None:
        _statement(t, "prod", "TargetTrackingAlarmsOfProd")["Action"].remove(
            "cloudwatch:PutMetricAlarm"
        )

    def no_service_linked_role(t: Template) -> None:
        policy = t["Resources"][ROLES["stg"]]["Properties"]["Policies"][0]["PolicyDocument"]
        policy["Statement"] = [
            s
            for s in policy["Statement"]
            if s["Sid"] != "FirstScalableTargetCreatesTheServiceLinkedRole"
        ]

    found = gaps(_edit(no_tag_on_create))
    assert (
        f"stg: ecs:CreateService sbcntr-backend (first deploy, tags) needs ecs:TagResource on "
        f"{table.ECS}:service/sbcntr-stg/sbcntr-backend ({table.TAG_ON_CREATE})"
    ) in found
    assert all(line.startswith("stg: ecs:CreateService") for line in found)
    found = gaps(_edit(no_alarms))
    assert len(found) == 2  # the target tracking policy of each service
    assert all("needs cloudwatch:PutMetricAlarm" in line for line in found)
    found = gaps(_edit(no_service_linked_role))
    assert [line.split(" needs ")[1].split(" on ")[0] for line in found] == [
        "iam:CreateServiceLinkedRole"
    ] * 2


def test_a_grant_no_call_needs_is_excess() -> None:
    def delete_service(t: Template) -> None:
        _statement(t, "prod", "DeployTheTwoServices")["Action"].append("ecs:DeleteService")

    def any_cluster(t: Template) -> None:
        _statement(t, "stg", "DeployTheTwoServices")["Resource"].append(
            {"Fn::Sub": "arn:aws:ecs:${AWS::Region}:${AWS::AccountId}:service/sbcntr-*/*"}
        )

    assert excess(_edit(delete_service)) == [
        f"prod DeployTheTwoServices: ecs:DeleteService on {table.ECS}:service/sbcntr-prod/{name}"
        for name in ("sbcntr-frontend", "sbcntr-backend")
    ]
    # A wider resource still serves stg's calls: the separation rule names what it opens.
    broken = _edit(any_cluster)
    assert "stg can ecs:UpdateService sbcntr-backend in prod" in separation_problems(broken)


def test_one_role_for_everything_fails_the_separation() -> None:
    """The old single role: main, stg and prod could all assume one role that deployed
    everywhere. Trusting stg's subject in the prod role is caught, and so is a push role
    that may deploy."""

    def prod_trusts_stg(t: Template) -> None:
        _subjects(t, "prod")["StringEquals"]["token.actions.githubusercontent.com:sub"] = [
            {"Fn::Sub": "repo:${GitHubRepository}:environment:stg"},
            {"Fn::Sub": "repo:${GitHubRepository}:environment:prod"},
        ]
        t["Resources"][ROLES["prod"]]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0][
            "Condition"
        ] = _subjects(t, "prod")

    def push_deploys(t: Template) -> None:
        push = t["Resources"][ROLES["push"]]["Properties"]["Policies"][0]["PolicyDocument"]
        prod = t["Resources"][ROLES["prod"]]["Properties"]["Policies"][0]["PolicyDocument"]
        push["Statement"] += copy.deepcopy(prod["Statement"])

    def any_branch(t: Template) -> None:
        condition = t["Resources"][ROLES["push"]]["Properties"]["AssumeRolePolicyDocument"][
            "Statement"
        ][0]["Condition"]
        condition["StringLike"] = condition.pop("StringEquals")
        condition["StringLike"]["token.actions.githubusercontent.com:sub"] = {
            "Fn::Sub": "repo:${GitHubRepository}:*"
        }

    assert trust_problems(_edit(prod_trusts_stg)) == [
        f"repo:{REPOSITORY}:environment:stg assumes ['prod', 'stg'], expected ['stg']"
    ]
    assert "push can ecs:UpdateService sbcntr-backend in prod" in separation_problems(
        _edit(push_deploys)
    )
    assert f"repo:{REPOSITORY}:ref:refs/heads/feature assumes ['push'], expected []" in (
        trust_problems(_edit(any_branch))
    )


def test_the_deny_policy_rule_fails_without_an_action_or_with_a_missing_exemption() -> None:
    def allow_put_image(t: Template) -> None:
        doc = t["Resources"]["ReleaseOnlyThroughPipeline"]["Properties"]["PolicyDocument"]
        doc["Statement"][0]["Action"].remove("ecr:PutImage")

    def deny_the_prod_role(t: Template) -> None:
        doc = t["Resources"]["ReleaseOnlyThroughPipeline"]["Properties"]["PolicyDocument"]
        arns = doc["Statement"][0]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]["Fn::If"]
        arns[2] = [a for a in arns[2] if a != {"Fn::GetAtt": ["ProdDeployRole", "Arn"]}]

    someone = f"arn:aws:iam::{table.ACCOUNT}:role/Admin"
    assert deny_problems(_edit(allow_put_image)) == [f"ecr:PutImage is not denied to {someone}"]
    assert (
        "ecs:UpdateService is denied to arn:aws:iam::123456789012:role/sbcntr-ci-deploy-prod"
        in (deny_problems(_edit(deny_the_prod_role)))
    )


def test_the_push_role_pushes_the_load_generator_and_no_deploy_role_reads_it() -> None:
    """The load generator is a release image (pushed by the images job, Amazon ECR User
    Guide: Pushing a Docker image) that no service runs: the deploy roles, which verify
    only the deployed images, get nothing on its repository."""
    found = roles(template())
    repository = f"{table.ECR}/sbcntr-loadtest"
    push = next(c for c in table.CALLS if c.call == "docker push sbcntr-loadtest")
    assert denied(found["push"][1], push.needs) == []
    assert allows(found["push"][1], "ecr:DescribeImages", repository, {})
    for key in ENVIRONMENTS:
        for action in ("ecr:DescribeImages", "ecr:BatchGetImage", "ecr:PutImage"):
            assert not allows(found[key][1], action, repository, {}), (key, action)

    def without_loadtest(t: Template) -> None:
        statement = _statement(t, "push", "PushTheReleaseRepositories")
        statement["Resource"] = [
            r for r in statement["Resource"] if not r["Fn::Sub"].endswith("/sbcntr-loadtest")
        ]

    missing = gaps(_edit(without_loadtest))
    assert missing
    assert all(line.startswith("push: ") and "sbcntr-loadtest" in line for line in missing)
    assert any(line.startswith("push: docker push sbcntr-loadtest needs") for line in missing)
