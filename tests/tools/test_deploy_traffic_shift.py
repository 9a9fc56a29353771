"""verify in the account: what a BLUE_GREEN or CANARY definition names exists and fits.

On a moto server (it holds Elastic Load Balancing target groups, listeners and
rules, Lambda functions and IAM roles as AWS describes them): the account of
infra/edge.yml and infra/deploy-hook.yml, then each check broken once (a
mutation of the definition pointing at a resource that does not fit). What AWS
documents: Elastic Load Balancing API Reference, DescribeTargetGroups,
DescribeRules, DescribeListeners; AWS Lambda API Reference,
GetFunctionConfiguration; IAM API Reference, GetRole; Amazon ECS Developer
Guide, "Application Load Balancer resources for blue/green, linear, and canary
deployments", "Amazon ECS infrastructure IAM role for load balancers",
"Lifecycle hooks for Amazon ECS service deployments". The permissions each
call needs are rows of tests/infra/release_permissions.py.
"""

from __future__ import annotations

import copy
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from sbcntrctl.deploy import ecs, traffic_shift
from tests.infra import release_permissions
from tests.tools.deploy_support import (
    BLUE_GREEN_ENV,
    ENV,
    TASKDEFS,
    aws_env,
    prerequisites,
    recorded_calls,
    run_cli,
    running_moto_server,
)

Mutation = Callable[[dict[str, Any], dict[str, str]], object]


def _trust(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def _target_group(elbv2: Any, name: str, vpc: str, path: str = "/readyz") -> str:
    return str(
        elbv2.create_target_group(
            Name=name,
            Protocol="HTTP",
            Port=8080,
            VpcId=vpc,
            TargetType="ip",
            HealthCheckPath=path,
        )["TargetGroups"][0]["TargetGroupArn"]
    )


def _rule(elbv2: Any, listener: str, priority: int, *groups: str) -> str:
    weighted = [{"TargetGroupArn": g, "Weight": 100 if i == 0 else 0} for i, g in enumerate(groups)]
    return str(
        elbv2.create_rule(
            ListenerArn=listener,
            Priority=priority,
            Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
            Actions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": weighted}}],
        )["Rules"][0]["RuleArn"]
    )


def _account() -> dict[str, str]:
    """The edge and deploy-hook stacks' resources of one service; their ARNs by name."""
    ec2, elbv2, iam = boto3.client("ec2"), boto3.client("elbv2"), boto3.client("iam")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=az)["Subnet"][
            "SubnetId"
        ]
        for n, az in ((1, "ap-northeast-1a"), (2, "ap-northeast-1c"))
    ]
    balancer = elbv2.create_load_balancer(Name="sbcntr-public", Subnets=subnets)["LoadBalancers"][0]
    elsewhere = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    arns = {
        "primary": _target_group(elbv2, "front", vpc),
        "alternate": _target_group(elbv2, "front-alt", vpc),
        "other-health": _target_group(elbv2, "front-other", vpc, path="/other"),
        "unattached": _target_group(elbv2, "front-loose", vpc),
        "other-vpc": _target_group(elbv2, "front-elsewhere", elsewhere),
        "internal": _target_group(elbv2, "back", vpc),
    }

    def listener(port: int, on: str = balancer["LoadBalancerArn"]) -> str:
        return str(
            elbv2.create_listener(
                LoadBalancerArn=on,
                Protocol="HTTP",
                Port=port,
                DefaultActions=[
                    {
                        "Type": "fixed-response",
                        "FixedResponseConfig": {"StatusCode": "404", "ContentType": "text/plain"},
                    }
                ],
            )["Listeners"][0]["ListenerArn"]
        )

    production, test = listener(80), listener(10080)
    internal = elbv2.create_load_balancer(
        Name="sbcntr-internal", Subnets=subnets, Scheme="internal"
    )["LoadBalancers"][0]["LoadBalancerArn"]
    arns["production-rule"] = _rule(elbv2, production, 1, arns["primary"], arns["alternate"])
    arns["test-rule"] = _rule(elbv2, test, 1, arns["alternate"])
    arns["one-group-rule"] = _rule(elbv2, production, 2, arns["primary"])
    arns["test-rule-on-production"] = _rule(elbv2, production, 3, arns["alternate"])
    arns["other-health-rule"] = _rule(elbv2, production, 4, arns["primary"], arns["other-health"])
    arns["test-rule-elsewhere"] = _rule(elbv2, listener(10080, internal), 1, arns["internal"])
    for name, service in (
        ("sbcntr-dev-ecs-load-balancers", "ecs.amazonaws.com"),
        ("sbcntr-dev-deploy-hook-invoke", "ecs.amazonaws.com"),
        ("sbcntr-dev-deploy-hook", "lambda.amazonaws.com"),
    ):
        arns[name] = iam.create_role(RoleName=name, AssumeRolePolicyDocument=_trust(service))[
            "Role"
        ]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    arns["function"] = boto3.client("lambda").create_function(
        FunctionName="sbcntr-dev-deploy-hook",
        Runtime="python3.13",
        Role=arns["sbcntr-dev-deploy-hook"],
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )["FunctionArn"]
    return arns


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One moto server for the module, the tools' and boto3's endpoint meanwhile."""
    with (
        running_moto_server(tmp_path_factory.mktemp("moto")) as url,
        pytest.MonkeyPatch.context() as patch,
    ):
        for name, value in aws_env(url).items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        yield url


@pytest.fixture(scope="module")
def base(server: str) -> dict[str, str]:
    """What every deploy needs (cluster, images, task roles...), made once."""
    return prerequisites(dict(ENV))


@pytest.fixture(scope="module")
def account(server: str) -> dict[str, str]:
    """The blue/green resources, made once (the tests only read them)."""
    return _account()


@pytest.fixture
def env(base: dict[str, str], account: dict[str, str]) -> dict[str, str]:
    """The variables the stacks' outputs give a BLUE_GREEN frontend in this account."""
    return {
        **BLUE_GREEN_ENV,
        **base,
        "FRONTEND_TARGET_GROUP_ARN": account["primary"],
        "FRONTEND_ALTERNATE_TARGET_GROUP_ARN": account["alternate"],
        # targetgroup/<name>/<id>: the dimension of the scaling policy's metric math
        "FRONTEND_TARGET_GROUP_FULL_NAME": account["primary"].split(":", 5)[-1],
        "FRONTEND_ALTERNATE_TARGET_GROUP_FULL_NAME": account["alternate"].split(":", 5)[-1],
        "FRONTEND_PRODUCTION_RULE_ARN": account["production-rule"],
        "FRONTEND_TEST_RULE_ARN": account["test-rule"],
        "ECS_LB_INFRASTRUCTURE_ROLE_ARN": account["sbcntr-dev-ecs-load-balancers"],
        "DEPLOY_HOOK_FUNCTION_ARN": account["function"],
        "DEPLOY_HOOK_ROLE_ARN": account["sbcntr-dev-deploy-hook-invoke"],
    }


def definition(env: dict[str, str], strategy: str = "BLUE_GREEN") -> dict[str, Any]:
    rendered = ecs.render("frontend", {**env, "DEPLOYMENT_STRATEGY": strategy}, TASKDEFS)
    assert ecs.problems(rendered) == []  # offline it is fine: only the account can tell
    return rendered.service_definition


@pytest.mark.parametrize("strategy", ["BLUE_GREEN", "CANARY"])
def test_the_resources_of_the_stacks_verify_with_calls_the_release_may_make(
    env: dict[str, str], strategy: str
) -> None:
    with recorded_calls() as calls:
        assert traffic_shift.problems(definition(env, strategy)) == []
    assert set(calls) == {
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeRules",
        "elasticloadbalancing:DescribeListeners",
        "iam:GetRole",
        "lambda:GetFunctionConfiguration",
    }
    assert release_permissions.uncovered(calls) == []


def test_rolling_makes_no_call(env: dict[str, str]) -> None:
    with recorded_calls() as calls:
        assert traffic_shift.problems(definition(env, "ROLLING")) == []
    assert calls == []


def _advanced(key: str, value: Callable[[dict[str, str]], str]) -> Mutation:
    def mutate(sd: dict[str, Any], account: dict[str, str]) -> None:
        sd["loadBalancers"][0]["advancedConfiguration"][key] = value(account)

    return mutate


def _primary(value: Callable[[dict[str, str]], str]) -> Mutation:
    def mutate(sd: dict[str, Any], account: dict[str, str]) -> None:
        sd["loadBalancers"][0]["targetGroupArn"] = value(account)

    return mutate


def _hook(key: str, value: Callable[[dict[str, str]], str]) -> Mutation:
    def mutate(sd: dict[str, Any], account: dict[str, str]) -> None:
        sd["deploymentConfiguration"]["lifecycleHooks"][0][key] = value(account)

    return mutate


ADVANCED = "loadBalancers[0].advancedConfiguration"
HOOK = "deploymentConfiguration.lifecycleHooks[0]"
MUTATIONS: dict[str, tuple[Mutation, str, str]] = {
    "a missing alternate group": (
        _advanced("alternateTargetGroupArn", lambda a: a["alternate"][:-4] + "dead"),
        f"{ADVANCED}.alternateTargetGroupArn",
        "does not exist: deploy the edge stack",
    ),
    "an alternate group with another health check path": (
        _advanced("alternateTargetGroupArn", lambda a: a["other-health"]),
        f"{ADVANCED}.alternateTargetGroupArn",
        "front-other has health check path '/other', the primary front '/readyz'",
    ),
    "a missing primary group": (
        _primary(lambda a: a["primary"][:-4] + "dead"),
        "loadBalancers[0].targetGroupArn",
        "targetgroup/front/[0-9a-f]+dead does not exist",
    ),
    "an alternate group in another VPC": (
        _advanced("alternateTargetGroupArn", lambda a: a["other-vpc"]),
        f"{ADVANCED}.alternateTargetGroupArn",
        "front-elsewhere has VPC 'vpc-[0-9a-f]+', the primary front 'vpc-",
    ),
    "an alternate group on no listener of the load balancer": (
        _advanced("alternateTargetGroupArn", lambda a: a["unattached"]),
        f"{ADVANCED}.alternateTargetGroupArn",
        "front-loose/[0-9a-f]+ is not attached to loadbalancer/app/sbcntr-public/",
    ),
    "a missing production rule": (
        _advanced("productionListenerRule", lambda a: a["production-rule"][:-4] + "dead"),
        f"{ADVANCED}.productionListenerRule",
        "does not exist",
    ),
    "a production rule forwarding to one group": (
        _advanced("productionListenerRule", lambda a: a["one-group-rule"]),
        f"{ADVANCED}.productionListenerRule",
        "not to exactly targetgroup/front-alt/",
    ),
    "a test rule on the production listener": (
        _advanced("testListenerRule", lambda a: a["test-rule-on-production"]),
        f"{ADVANCED}.testListenerRule",
        r"on the production rule's listener \(port 80\)",
    ),
    "a test rule on another load balancer": (
        _advanced("testListenerRule", lambda a: a["test-rule-elsewhere"]),
        f"{ADVANCED}.testListenerRule",
        "on loadbalancer/app/sbcntr-internal/[0-9a-f]+, the production rule on "
        "loadbalancer/app/sbcntr-public/",
    ),
    "a missing load-balancer role": (
        _advanced("roleArn", lambda a: a["sbcntr-dev-ecs-load-balancers"] + "-gone"),
        f"{ADVANCED}.roleArn",
        "role sbcntr-dev-ecs-load-balancers-gone does not exist",
    ),
    "a load-balancer role trusted by another service": (
        _advanced("roleArn", lambda a: a["sbcntr-dev-deploy-hook"]),
        f"{ADVANCED}.roleArn",
        "role sbcntr-dev-deploy-hook does not trust ecs.amazonaws.com",
    ),
    "a hook function that does not exist": (
        _hook("hookTargetArn", lambda a: a["function"] + "-gone"),
        f"{HOOK}.hookTargetArn",
        "function sbcntr-dev-deploy-hook-gone does not exist: deploy the deploy-hook stack",
    ),
    "a hook role trusted by another service": (
        _hook("roleArn", lambda a: a["sbcntr-dev-deploy-hook"]),
        f"{HOOK}.roleArn",
        "role sbcntr-dev-deploy-hook does not trust ecs.amazonaws.com",
    ),
}


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_verify_names_the_resource_that_does_not_fit(
    env: dict[str, str], account: dict[str, str], case: str
) -> None:
    mutate, field, message = MUTATIONS[case]
    sd = copy.deepcopy(definition(env))
    mutate(sd, account)
    found = traffic_shift.problems(sd)
    assert any(p.field == field and re.search(message, p.message) for p in found), found


@pytest.mark.parametrize(
    ("document", "trusted"),
    [
        (json.loads(_trust("ecs.amazonaws.com")), True),
        (json.loads(_trust("ecs-tasks.amazonaws.com")), False),
        (
            {
                "Statement": {
                    "Effect": "Allow",
                    "Principal": {"Service": ["ecs.amazonaws.com"]},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                }
            },
            True,
        ),
        (
            {
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": {"Service": "ecs.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ]
            },
            False,
        ),
        (
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::1:root"},
                        "Action": "sts:AssumeRole",
                    }
                ]
            },
            False,
        ),
    ],
)
def test_a_trust_policy_trusts_ecs_only_with_an_allow_for_its_service_principal(
    document: dict[str, Any], trusted: bool
) -> None:
    assert traffic_shift.trusts(document, "ecs.amazonaws.com") is trusted


def test_deploy_verify_reports_the_account_problems_one_line_each(
    server: str, env: dict[str, str], account: dict[str, str]
) -> None:
    """The command as operators and the release run it: every check before, then these."""
    cli_env = {**env, **aws_env(server)}
    assert run_cli("verify", "frontend", env=cli_env).returncode == 0
    broken = {
        **cli_env,
        "DEPLOY_HOOK_FUNCTION_ARN": account["function"] + "-gone",
        "FRONTEND_PRODUCTION_RULE_ARN": account["one-group-rule"],
    }
    result = run_cli("verify", "frontend", env=broken)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith(
        "  loadBalancers[0].advancedConfiguration.productionListenerRule: forwards to "
        "targetgroup/front/"
    )
    assert lines[1] == (
        "  deploymentConfiguration.lifecycleHooks[0].hookTargetArn: function "
        "sbcntr-dev-deploy-hook-gone does not exist: deploy the deploy-hook stack "
        "(sbcntrctl infra deploy ENV --only deploy-hook)"
    )
    assert "frontend: 2 problems" in result.stdout
