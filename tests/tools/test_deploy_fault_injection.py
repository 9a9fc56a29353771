"""The fault-injection variant of the task definitions (``FAULT_INJECTION=true``): the
FIS SSM agent sidecar and ``enableFaultInjection``, as the FIS user guide ("Use the
aws:ecs:task actions") and the ECS developer guide ("Use fault injection with your
Amazon ECS and Fargate workloads") require, and the rules ``deploy verify`` keeps.

``ecs.problems`` validates the rendered task definition against the pinned
botocore model of RegisterTaskDefinition (``enableFaultInjection`` included).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from sbcntrctl.deploy import ecs, fault_injection, template
from tests.infra.cfn import resolve, resources
from tests.infra.cfn import template as infra_template
from tests.tools.test_deploy import ENV, SERVICES, TASKDEFS

DRILLING = {**ENV, "FAULT_INJECTION": "true"}


def sidecar(td: dict[str, Any]) -> dict[str, Any]:
    (found,) = [c for c in td["containerDefinitions"] if c["name"] == "amazon-ssm-agent"]
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_default_has_no_sidecar_and_no_fault_injection(service: str) -> None:
    for env in (ENV, {**ENV, "FAULT_INJECTION": ""}, {**ENV, "FAULT_INJECTION": "false"}):
        td = ecs.render(service, env, TASKDEFS).task_definition
        assert "enableFaultInjection" not in td
        assert "amazon-ssm-agent" not in {c["name"] for c in td["containerDefinitions"]}


@pytest.mark.parametrize("service", SERVICES)
def test_the_variant_adds_the_sidecar_and_verifies(service: str) -> None:
    rendered = ecs.render(service, DRILLING, TASKDEFS)
    td = rendered.task_definition
    assert td["enableFaultInjection"] is True
    agent = sidecar(td)
    assert agent["essential"] is False
    assert agent["image"].startswith(
        f"{ENV['AWS_ACCOUNT_ID']}.dkr.ecr.{ENV['AWS_REGION']}.amazonaws.com/ecr-public/"
    )
    script = agent["command"][2]
    assert "aws ssm create-activation --iam-role $MANAGED_INSTANCE_ROLE_NAME" in script
    assert "Key=ECS_TASK_ARN,Value=$ECS_TASK_ARN" in script
    assert "aws ssm deregister-managed-instance" in script  # cleans up when the task stops
    assert ecs.problems(rendered) == []
    # The app containers are untouched.
    plain = ecs.render(service, ENV, TASKDEFS).task_definition
    assert td["containerDefinitions"][:-1] == plain["containerDefinitions"]


def test_the_sidecar_uses_the_drills_stacks_role_and_log_group() -> None:
    drills = infra_template("drills")
    names = {"EnvName": "dev", "AWS::Partition": "aws", "AWS::Region": "ap-northeast-1"}
    role = resolve(drills["Resources"]["ManagedInstanceRole"]["Properties"]["RoleName"], names)
    groups = {
        resolve(g["Properties"]["LogGroupName"], names)
        for g in resources(drills, "AWS::Logs::LogGroup").values()
    }
    agent = sidecar(
        ecs.render("backend", {**DRILLING, "ENV_NAME": "dev"}, TASKDEFS).task_definition
    )
    assert {"name": "MANAGED_INSTANCE_ROLE_NAME", "value": role} in agent["environment"]
    assert agent["logConfiguration"]["options"]["awslogs-group"] in groups


def test_a_value_other_than_true_or_false_is_refused() -> None:
    with pytest.raises(template.TemplateError, match="FAULT_INJECTION='yes': true or false"):
        ecs.render("backend", {**ENV, "FAULT_INJECTION": "yes"}, TASKDEFS)


Mutation = Callable[[dict[str, Any], dict[str, Any]], Any]
BROKEN: list[tuple[str, Mutation, str]] = [
    (
        "essential sidecar",
        lambda td, _: sidecar(td).update(essential=True),
        "containerDefinitions[amazon-ssm-agent].essential: must be false",
    ),
    (
        "no role variable",
        lambda td, _: sidecar(td).update(environment=[]),
        "MANAGED_INSTANCE_ROLE_NAME must name the role",
    ),
    (
        "fault injection off",
        lambda td, _: td.pop("enableFaultInjection"),
        "enableFaultInjection: must be true with the FIS sidecar",
    ),
    (
        "ECS Exec on the service",
        lambda _, sd: sd.update(enableExecuteCommand=True),
        "enableExecuteCommand: must be off",
    ),
]


@pytest.mark.parametrize(
    ("mutation", "expected"), [(m, e) for _, m, e in BROKEN], ids=[n for n, _, _ in BROKEN]
)
def test_each_sidecar_rule_names_a_broken_definition(mutation: Mutation, expected: str) -> None:
    rendered = ecs.render("frontend", DRILLING, TASKDEFS)
    td = copy.deepcopy(rendered.task_definition)
    sd = copy.deepcopy(rendered.service_definition)
    mutation(td, sd)
    found = [str(p) for p in fault_injection.problems(td, sd)]
    assert any(expected in p for p in found), found
