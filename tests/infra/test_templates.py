"""The templates: lint-clean (cfn-lint, checkov) and keeping the rules in rules.py.

Each rule is shown to pass on the templates as they are and to name the break
when a template is broken on purpose.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sbcntrctl.infra.stacks import STACKS
from tests.infra import rules
from tests.infra.cfn import template
from tests.support import ROOT, assert_checkov_passes

INFRA = ROOT / "infra"


def all_templates() -> dict[str, dict[str, Any]]:
    return {s.key: template(s.key) for s in STACKS}


def test_every_stack_has_its_template_and_nothing_else_is_there() -> None:
    assert {p.stem for p in INFRA.glob("*.yml")} == {s.key for s in STACKS}


def test_a_parameter_given_once_suits_every_template_that_declares_it() -> None:
    """`infra deploy --param NAME=VALUE` passes the value to each template declaring NAME."""
    declared: dict[str, dict[str, Any]] = {}
    for name, tpl in all_templates().items():
        for parameter, spec in tpl.get("Parameters", {}).items():
            shape = {k: spec.get(k) for k in ("Type", "AllowedValues", "AllowedPattern")}
            first = declared.setdefault(parameter, {"template": name, **shape})
            assert {k: first[k] for k in shape} == shape, (parameter, first["template"], name)


@pytest.mark.slow
def test_cfn_lint_finds_nothing() -> None:
    """Errors and warnings alike; a warning is fixed or suppressed in the template with a reason."""
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), *map(str, sorted(INFRA.glob("*.yml")))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_catches_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "edge.yml"
    broken.write_text((INFRA / "edge.yml").read_text().replace("Port: 8081", "Port: 80810"))
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), str(broken)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "80810" in result.stdout


@pytest.mark.slow
def test_checkov_passes_with_every_skip_reasoned() -> None:
    assert_checkov_passes(INFRA, "cloudformation")
    for name, tpl in all_templates().items():
        for logical, resource in tpl["Resources"].items():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                assert len(skip.get("comment", "")) > 20, f"{name}.yml {logical}: {skip}"


def test_the_templates_keep_the_rules() -> None:
    templates = all_templates()
    assert rules.security_group_problems(templates) == []
    assert rules.bucket_problems(templates["platform"]) == []
    assert rules.registry_problems(templates["registry"]) == []
    assert rules.waf_problems(templates["edge"]) == []
    assert rules.edge_problems(templates["edge"]) == []
    assert rules.deploy_hook_problems(templates["deploy-hook"]) == []
    assert rules.network_problems(templates["network"]) == []
    assert rules.data_problems(templates["data"]) == []


Mutation = Callable[[dict[str, dict[str, Any]]], None]


def res(templates: dict[str, dict[str, Any]], key: str, logical: str) -> dict[str, Any]:
    props: dict[str, Any] = templates[key]["Resources"][logical]["Properties"]
    return props


def repository_rules(templates: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The frontend repository's lifecycle rules, to mutate (written back by ``store_rules``)."""
    rules_: list[dict[str, Any]] = rules.lifecycle_policy(
        templates["registry"], "FrontendRepository"
    )["rules"]
    return rules_


def store_rules(templates: dict[str, dict[str, Any]], rules_: list[dict[str, Any]]) -> None:
    policy = res(templates, "registry", "FrontendRepository")["LifecyclePolicy"]
    policy["LifecyclePolicyText"] = json.dumps({"rules": rules_})


def _swap_prod_and_stg(templates: dict[str, dict[str, Any]]) -> None:
    found = repository_rules(templates)
    by_prefix = {tuple(r["selection"].get("tagPrefixList", [])): r for r in found}
    prod, stg = by_prefix[("prod-",)], by_prefix[("stg-",)]
    prod["rulePriority"], stg["rulePriority"] = stg["rulePriority"], prod["rulePriority"]
    store_rules(templates, found)


def _prod_guard_count(templates: dict[str, dict[str, Any]]) -> None:
    found = repository_rules(templates)
    next(r for r in found if r["selection"].get("tagPrefixList") == ["prod-"])["selection"][
        "countNumber"
    ] = 50
    store_rules(templates, found)


def _any_rule_first(templates: dict[str, dict[str, Any]]) -> None:
    found = repository_rules(templates)
    found.append(
        {
            "rulePriority": 0,
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": 500,
            },
            "action": {"type": "expire"},
        }
    )
    store_rules(templates, found)


def _without_prod_guard(templates: dict[str, dict[str, Any]]) -> None:
    found = [
        r for r in repository_rules(templates) if r["selection"].get("tagPrefixList") != ["prod-"]
    ]
    store_rules(templates, found)


def _tg_attribute(templates: dict[str, dict[str, Any]], value: str) -> None:
    res(templates, "edge", "FrontendTargetGroup")["TargetGroupAttributes"][0]["Value"] = value


def _hook_ingress_by_vpc_range(templates: dict[str, dict[str, Any]]) -> None:
    ingress = res(templates, "deploy-hook", "InternalAlbTestFromHook")
    ingress.pop("SourceSecurityGroupId")
    ingress["CidrIp"] = "10.10.0.0/16"


BROKEN: list[tuple[str, Mutation, str]] = [
    # edge
    ("default deregistration delay", lambda t: _tg_attribute(t, "300"), "deregistration delay 300"),
    (
        "liveness instead of readiness",
        lambda t: res(t, "edge", "BackendTargetGroup").update(HealthCheckPath="/healthz"),
        "BackendTargetGroup: health check is /healthz",
    ),
    (
        "idle timeout above keep-alive",
        lambda t: res(t, "edge", "PublicAlb")["LoadBalancerAttributes"][0].update(Value="120"),
        "PublicAlb: idle timeout 120 s",
    ),
    (
        "maintenance only on one path",
        lambda t: res(t, "edge", "MaintenanceRule")["Conditions"]["Fn::If"][1][0].update(
            PathPatternConfig={"Values": ["/"]}
        ),
        "MaintenanceRule: must match every path",
    ),
    # blue/green: "Application Load Balancer resources for blue/green, linear, and canary
    # deployments", "Amazon ECS infrastructure IAM role for load balancers" (ECS guide)
    (
        "maintenance off still matching every request",
        lambda t: res(t, "edge", "MaintenanceRule")["Conditions"]["Fn::If"].__setitem__(
            2, [{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/*"]}}]
        ),
        "MaintenanceRule: off, it must match no production request",
    ),
    (
        "maintenance forwarding when off (the old rule)",
        lambda t: res(t, "edge", "MaintenanceRule").update(
            Actions=[{"Type": "forward", "TargetGroupArn": {"Ref": "FrontendTargetGroup"}}]
        ),
        "MaintenanceRule: maintenance must answer 503 text/html",
    ),
    (
        "test listener open to the internet",
        lambda t: res(t, "edge", "PublicAlbTestFromOperators").update(CidrIp="0.0.0.0/0"),
        "PublicAlbSecurityGroup: port 8080-8080 open to the internet",
    ),
    (
        "test listener open to the VPC range instead of the hook's group",
        _hook_ingress_by_vpc_range,
        "InternalAlbSecurityGroup: unexpected ingress ('tcp', 8080, 8080, '10.10.0.0/16')",
    ),
    (
        "test rule sending test traffic to production's group",
        lambda t: res(t, "edge", "FrontendTestRule")["Actions"][0]["ForwardConfig"]["TargetGroups"][
            0
        ].update(Weight=100),
        "FrontendTestRule: test traffic must go to the alternate group only",
    ),
    (
        "test rule on the production listener",
        lambda t: res(t, "edge", "BackendTestRule").update(ListenerArn={"Ref": "InternalListener"}),
        "BackendTestRule: must be on its own listener (port 8080) of InternalAlb",
    ),
    (
        "production rule forwarding to the primary group only",
        lambda t: res(t, "edge", "BackendProductionRule").update(
            Actions=[{"Type": "forward", "TargetGroupArn": {"Ref": "BackendTargetGroup"}}]
        ),
        "BackendProductionRule: must forward to both groups, primary 100 and alternate 0",
    ),
    (
        "production rule starting on the alternate group",
        lambda t: res(t, "edge", "FrontendProductionRule")["Actions"][0]["ForwardConfig"][
            "TargetGroups"
        ][1].update(Weight=100),
        "FrontendProductionRule: must forward to both groups, primary 100 and alternate 0",
    ),
    (
        "a listener forwarding by default (bypassing the weights)",
        lambda t: res(t, "edge", "InternalListener").update(
            DefaultActions=[{"Type": "forward", "TargetGroupArn": {"Ref": "BackendTargetGroup"}}]
        ),
        "InternalListener: default action must be a fixed 404",
    ),
    (
        "alternate group with another health check",
        lambda t: res(t, "edge", "FrontendAlternateTargetGroup").update(HealthCheckPath="/"),
        "FrontendAlternateTargetGroup: must match FrontendTargetGroup",
    ),
    (
        "infrastructure role trusted by tasks",
        lambda t: res(t, "edge", "LoadBalancerInfrastructureRole")["AssumeRolePolicyDocument"][
            "Statement"
        ][0].update(Principal={"Service": "ecs-tasks.amazonaws.com"}),
        "LoadBalancerInfrastructureRole: must trust ecs.amazonaws.com only",
    ),
    (
        "infrastructure role with more than the load balancer policy",
        lambda t: res(t, "edge", "LoadBalancerInfrastructureRole")["ManagedPolicyArns"].append(
            "arn:aws:iam::aws:policy/AdministratorAccess"
        ),
        "LoadBalancerInfrastructureRole: policies",
    ),
    (
        "test rule not exported",
        lambda t: t["edge"]["Outputs"]["BackendTestRuleArn"].pop("Export"),
        "output BackendTestRuleArn: not exported",
    ),
    # the deploy hook: "Permissions required for Lambda functions in Amazon ECS
    # blue/green deployments"
    (
        "hook invoke role on every function",
        lambda t: res(t, "deploy-hook", "DeployHookInvokeRole")["Policies"][0]["PolicyDocument"][
            "Statement"
        ][0].update(Resource="arn:aws:lambda:*:*:function:*"),
        "DeployHookInvokeRole: may do more than invoke the hook",
    ),
    (
        "hook invoke role trusted by Lambda",
        lambda t: res(t, "deploy-hook", "DeployHookInvokeRole")["AssumeRolePolicyDocument"][
            "Statement"
        ][0].update(Principal={"Service": "lambda.amazonaws.com"}),
        "DeployHookInvokeRole: must trust ecs.amazonaws.com only",
    ),
    # network
    (
        "no X-Ray endpoint",
        lambda t: t["network"]["Resources"].pop("XRayEndpoint"),
        "no interface endpoint for xray",
    ),
    (
        "no EC2 endpoint (the deploy hook without NAT)",
        lambda t: t["network"]["Resources"].pop("Ec2Endpoint"),
        "no interface endpoint for ec2",
    ),
    (
        "no S3 gateway",
        lambda t: t["network"]["Resources"].pop("S3GatewayEndpoint"),
        "no S3 gateway endpoint",
    ),
    (
        "flow logs of rejected traffic only",
        lambda t: res(t, "network", "FlowLog").update(TrafficType="REJECT"),
        "no flow log of ALL traffic",
    ),
    # data
    (
        "no deletion protection in prod",
        lambda t: res(t, "data", "AuroraCluster").update(DeletionProtection=False),
        "AuroraCluster: deletion protection must be on in prod",
    ),
    (
        "public database",
        lambda t: res(t, "data", "RdsInstance").update(PubliclyAccessible=True),
        "RdsInstance: publicly accessible",
    ),
    # security groups
    (
        "backend open to the internet",
        lambda t: res(t, "edge", "BackendSecurityGroup").update(
            SecurityGroupIngress=[
                {"IpProtocol": "tcp", "FromPort": 8081, "ToPort": 8081, "CidrIp": "0.0.0.0/0"}
            ]
        ),
        "BackendSecurityGroup: open to the internet",
    ),
    (
        "frontend by CIDR instead of the ALB's group",
        lambda t: (
            res(t, "edge", "FrontendFromPublicAlb").pop("SourceSecurityGroupId"),
            res(t, "edge", "FrontendFromPublicAlb").update(CidrIp="10.10.0.0/16"),
        ),
        "FrontendSecurityGroup: unexpected ingress ('tcp', 8080, 8080, '10.10.0.0/16')",
    ),
    (
        "backend reachable from the frontend directly",
        lambda t: res(t, "edge", "BackendFromInternalAlb").update(
            SourceSecurityGroupId={"Ref": "FrontendSecurityGroup"}
        ),
        "BackendSecurityGroup: missing ingress ('tcp', 8081, 8081, 'sg:InternalAlbSecurityGroup')",
    ),
    (
        "every port",
        lambda t: res(t, "edge", "BackendFromInternalAlb").update(FromPort=0, ToPort=65535),
        "BackendSecurityGroup: unexpected ingress ('tcp', 0, 65535",
    ),
    (
        "database from the frontend",
        lambda t: res(t, "data", "DatabaseSecurityGroup")["SecurityGroupIngress"][0].update(
            SourceSecurityGroupId={
                "Fn::ImportValue": {"Fn::Sub": "sbcntr-${EnvName}-FrontendSecurityGroup"}
            }
        ),
        "DatabaseSecurityGroup: unexpected ingress ('tcp', 5432, 5432, 'sg:FrontendSecurityGroup')",
    ),
    (
        "endpoints from the VPC range",
        lambda t: res(t, "network", "EndpointSecurityGroup").update(
            SecurityGroupIngress=[
                {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "10.10.0.0/16"}
            ]
        ),
        "EndpointSecurityGroup: unexpected ingress ('tcp', 443, 443, '10.10.0.0/16')",
    ),
    # the log bucket
    (
        "public policy allowed",
        lambda t: res(t, "platform", "LogBucket")["PublicAccessBlockConfiguration"].update(
            BlockPublicPolicy=False
        ),
        "LogBucket: BlockPublicPolicy is not true",
    ),
    (
        "TLS statement allows instead of denying",
        lambda t: res(t, "platform", "LogBucketPolicy")["PolicyDocument"]["Statement"][0].update(
            Effect="Allow"
        ),
        "no Deny of every action without TLS",
    ),
    (
        "TLS deny on the bucket but not its objects",
        lambda t: res(t, "platform", "LogBucketPolicy")["PolicyDocument"]["Statement"][0].update(
            Resource={"Fn::GetAtt": ["LogBucket", "Arn"]}
        ),
        "must cover the bucket and its objects",
    ),
    (
        "everyone may write",
        lambda t: res(t, "platform", "LogBucketPolicy")["PolicyDocument"]["Statement"].append(
            {"Sid": "Open", "Effect": "Allow", "Principal": "*", "Action": "s3:PutObject"}
        ),
        "Open allows everyone",
    ),
    (
        "no transition to Glacier",
        lambda t: res(t, "platform", "LogBucket")["LifecycleConfiguration"]["Rules"][0][
            "Transitions"
        ].pop(),
        "lifecycle transitions",
    ),
    # the registry
    (
        "staging rule ahead of the production guard",
        _swap_prod_and_stg,
        "FrontendRepository: an image tagged ['prod-a1b2c3d', 'stg-a1b2c3d'] can be expired",
    ),
    (
        "production guard that can fire",
        _prod_guard_count,
        "FrontendRepository: an image tagged ['prod-a1b2c3d'] can be expired",
    ),
    (
        "an any-tag rule first",
        _any_rule_first,
        "FrontendRepository: an image tagged ['prod-a1b2c3d'] can be expired by rule 0",
    ),
    (
        "no production guard",
        _without_prod_guard,
        "FrontendRepository: an image tagged ['prod-a1b2c3d', 'stg-a1b2c3d'] can be expired",
    ),
    (
        "mutable tags",
        lambda t: res(t, "registry", "BackendRepository").update(ImageTagMutability="MUTABLE"),
        "BackendRepository: tags are not IMMUTABLE",
    ),
    (
        "no scan on push",
        lambda t: res(t, "registry", "LogRouterRepository").update(
            ImageScanningConfiguration={"ScanOnPush": False}
        ),
        "LogRouterRepository: no scan on push",
    ),
    (
        "anyone may push",
        lambda t: res(t, "registry", "OtelCollectorRepository").pop("RepositoryPolicyText"),
        "OtelCollectorRepository: push is not limited to the CI role",
    ),
    (
        "push denied to the CI role only",
        lambda t: res(t, "registry", "BackendRepository")["RepositoryPolicyText"]["Fn::If"][1][
            "Statement"
        ][0]["Condition"]["ArnNotEquals"].update({"aws:PrincipalArn": {"Ref": "OtherRoleArn"}}),
        "BackendRepository: push is not limited to the CI role",
    ),
    # WAF
    (
        "web ACL on the internal ALB",
        lambda t: res(t, "edge", "WebAclAssociation").update(ResourceArn={"Ref": "InternalAlb"}),
        "PublicAlb (internet-facing) has no web ACL",
    ),
    (
        "managed group only counting",
        lambda t: res(t, "edge", "WebAcl")["Rules"][2].update(OverrideAction={"Count": {}}),
        "aws-common: managed group only counts",
    ),
    (
        "known bad inputs dropped",
        lambda t: res(t, "edge", "WebAcl").update(Rules=res(t, "edge", "WebAcl")["Rules"][:3]),
        "not enforced: AWSManagedRulesKnownBadInputsRuleSet",
    ),
    (
        "rate rule counting",
        lambda t: res(t, "edge", "WebAcl")["Rules"][0].update(Action={"Count": {}}),
        "rate-limit-per-ip: rate rule does not block",
    ),
    (
        "WAF logs to a group WAF refuses",
        lambda t: res(t, "edge", "WafLogGroup").update(
            LogGroupName={"Fn::Sub": "/sbcntr/${EnvName}/waf"}
        ),
        "WafLogGroup: WAF log groups must start with aws-waf-logs-",
    ),
]


def all_problems(templates: dict[str, dict[str, Any]]) -> list[str]:
    return [
        *rules.security_group_problems(templates),
        *rules.bucket_problems(templates["platform"]),
        *rules.registry_problems(templates["registry"]),
        *rules.waf_problems(templates["edge"]),
        *rules.edge_problems(templates["edge"]),
        *rules.deploy_hook_problems(templates["deploy-hook"]),
        *rules.network_problems(templates["network"]),
        *rules.data_problems(templates["data"]),
    ]


@pytest.mark.parametrize(
    ("mutation", "expected"), [(m, e) for _, m, e in BROKEN], ids=[n for n, _, _ in BROKEN]
)
def test_each_rule_names_a_broken_template(mutation: Mutation, expected: str) -> None:
    templates = all_templates()
    mutation(templates)
    problems = all_problems(templates)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("203.0.113.0/24", True),
        ("198.51.100.7/32", True),
        ("0.0.0.0/0", False),
        ("10.0.0.0/7", False),
        ("203.0.113.0", False),
    ],
)
def test_the_operators_range_is_never_the_internet(value: str, accepted: bool) -> None:
    """edge.yml's OperatorCidr opens the test listeners to a range: its pattern refuses
    /0 (and anything wider than /8), so the test port can never face the internet."""
    pattern = template("edge")["Parameters"]["OperatorCidr"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted
