"""operations.yml (the bastion) and drills.yml (FIS): the rules of operations_rules.py
hold on the templates, and each names a break made on purpose.

cfn-lint and checkov cover these templates with the others (test_templates.py);
the app task definitions are checked here too: ECS Exec stays off on them (the
FIS task actions refuse tasks with ECS Exec on: FIS user guide, "Use the
aws:ecs:task actions", limitations).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from typing import Any

import pytest

from sbcntrctl.deploy import ecs
from tests.infra import operations_rules
from tests.infra.cfn import template
from tests.tools.deploy_support import ENV, TASKDEFS

Templates = dict[str, dict[str, Any]]


@functools.cache
def _parsed(key: str) -> dict[str, Any]:
    return template(key)


def templates() -> Templates:
    """Fresh copies to break (the templates are parsed once per session)."""
    return {key: copy.deepcopy(_parsed(key)) for key in ("operations", "drills", "monitoring")}


def problems(t: Templates) -> list[str]:
    return [
        *operations_rules.operations_problems(t["operations"]),
        *operations_rules.drills_problems(t["drills"], t["monitoring"]),
    ]


def test_the_templates_keep_the_rules() -> None:
    assert problems(templates()) == []


def props(t: Templates, key: str, logical: str) -> dict[str, Any]:
    found: dict[str, Any] = t[key]["Resources"][logical]["Properties"]
    return found


def bastion(t: Templates) -> dict[str, Any]:
    container: dict[str, Any] = props(t, "operations", "BastionTaskDefinition")[
        "ContainerDefinitions"
    ][0]
    return container


def task_policy(t: Templates) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = props(t, "operations", "BastionTaskRole")["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    return statements


def stop_conditions(t: Templates, logical: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = props(t, "drills", logical)["StopConditions"]
    return found


def experiment_statement(t: Templates, sid: str) -> dict[str, Any]:
    (found,) = [s for s in experiment_role(t) if s.get("Sid") == sid]
    return found


def experiment_role(t: Templates) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = props(t, "drills", "ExperimentRole")["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    return statements


BROKEN: list[tuple[str, Callable[[Templates], Any], str]] = [
    (
        "agent state path not writable",
        lambda t: bastion(t)["MountPoints"].pop(1),
        "BastionTaskDefinition/bastion: ECS Exec without /var/lib/amazon/ssm writable",
    ),
    (
        "agent log path mounted read-only",
        lambda t: bastion(t)["MountPoints"][2].update(ReadOnly=True),
        "ECS Exec without /var/log/amazon/ssm writable",
    ),
    (
        "writable root instead of the agent's paths",
        lambda t: bastion(t).update(ReadonlyRootFilesystem=False),
        "BastionTaskDefinition/bastion: ECS Exec on a writable root",
    ),
    (
        "ssmmessages wildcard",
        lambda t: task_policy(t)[0].update(Action=["ssmmessages:*"]),
        "BastionTaskRole: ssmmessages actions ['ssmmessages:*'] are not exactly ECS Exec's",
    ),
    (
        "a data channel action missing",
        lambda t: task_policy(t)[0]["Action"].remove("ssmmessages:OpenDataChannel"),
        "are not exactly ECS Exec's",
    ),
    (
        "ssmmessages on the execution role",
        lambda t: props(t, "operations", "BastionExecutionRole")["Policies"][0]["PolicyDocument"][
            "Statement"
        ].append({"Effect": "Allow", "Action": "ssmmessages:OpenDataChannel", "Resource": "*"}),
        "BastionExecutionRole: ssmmessages actions on a role that runs no session",
    ),
    (
        "sessions logged by default (not to us)",
        lambda t: props(t, "operations", "OperationsCluster")["Configuration"][
            "ExecuteCommandConfiguration"
        ].update(Logging="DEFAULT"),
        "OperationsCluster: ECS Exec sessions are not logged",
    ),
    (
        "session log written in clear",
        lambda t: props(t, "operations", "OperationsCluster")["Configuration"][
            "ExecuteCommandConfiguration"
        ]["LogConfiguration"].update(CloudWatchEncryptionEnabled=False),
        "OperationsCluster: session log must be written encrypted",
    ),
    (
        "session log group without a key",
        lambda t: props(t, "operations", "SessionLogGroup").pop("KmsKeyId"),
        "the session log group is not KMS-encrypted",
    ),
    (
        "bastion in prod by default",
        lambda t: t["operations"]["Conditions"].update(
            WithBastion={"Fn::Not": [{"Fn::Equals": [{"Ref": "OperatorAccess"}, "never"]}]}
        ),
        "bastion in prod with OperatorAccess=non-prod: should be False",
    ),
    (
        "task definition outside the condition",
        lambda t: t["operations"]["Resources"]["BastionTaskDefinition"].pop("Condition"),
        "BastionTaskDefinition: exists whatever OperatorAccess says",
    ),
    (
        "operators may exec anywhere",
        lambda t: props(t, "operations", "OperatorPolicy")["PolicyDocument"]["Statement"][2].update(
            Resource="*"
        ),
        "OperatorPolicy: ecs:ExecuteCommand on every resource",
    ),
    (
        "stop condition on an alarm monitoring.yml does not create",
        lambda t: stop_conditions(t, "StopBackendTasks")[0].update(
            Value={
                "Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:"
                "${AWS::AccountId}:alarm:sbcntr-${EnvName}-5xx"
            }
        ),
        "StopBackendTasks: stop condition sbcntr-dev-5xx is no alarm of monitoring.yml",
    ),
    (
        "no stop on latency",
        lambda t: stop_conditions(t, "CpuStressFrontend").pop(1),
        "CpuStressFrontend: does not stop on sbcntr-dev-frontend-p99-latency",
    ),
    (
        "a drill missing",
        lambda t: t["drills"]["Resources"].pop("NetworkLatencyBackend"),
        "no aws:ecs:task-network-latency drill for the backend",
    ),
    (
        "latency without the Fargate endpoints",
        lambda t: props(t, "drills", "NetworkLatencyFrontend")["Actions"]["NetworkLatency"][
            "Parameters"
        ].pop("useEcsFaultInjectionEndpoints"),
        "NetworkLatencyFrontend: network faults on Fargate need the ECS fault injection endpoints",
    ),
    (
        "tasks of another cluster",
        lambda t: props(t, "drills", "StopFrontendTasks")["Targets"]["Tasks"]["Parameters"].update(
            cluster="sbcntr-prod"
        ),
        "StopFrontendTasks: targets tasks outside the environment's cluster",
    ),
    (
        "stop any task of the account",
        lambda t: experiment_statement(t, "StopAndDescribeTheServicesTasks").update(Resource="*"),
        "ExperimentRole: ecs:DescribeTasks on every resource",
    ),
    (
        "list tasks of every cluster",
        lambda t: experiment_statement(t, "FindTheServicesTasks").pop("Condition"),
        "ExperimentRole: ecs:ListTasks on every resource",
    ),
    (
        "stop tasks of every cluster",
        lambda t: experiment_statement(t, "StopAndDescribeTheServicesTasks").update(
            Resource={
                "Fn::Sub": "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task/*"
            }
        ),
        "ExperimentRole: StopAndDescribeTheServicesTasks reaches other clusters",
    ),
]


@pytest.mark.parametrize(
    ("mutation", "expected"), [(m, e) for _, m, e in BROKEN], ids=[n for n, _, _ in BROKEN]
)
def test_each_rule_names_a_broken_template(
    mutation: Callable[[Templates], Any], expected: str
) -> None:
    broken = templates()
    mutation(broken)
    found = problems(broken)
    assert any(expected in p for p in found), found


@pytest.mark.parametrize("service", ["frontend", "backend"])
def test_the_app_tasks_keep_ecs_exec_off(service: str) -> None:
    """Exec off on the services; turned on, ``deploy verify`` refuses their read-only
    containers without the agent's paths, naming each missing path."""
    rendered = ecs.render(service, ENV, TASKDEFS)
    assert rendered.service_definition.get("enableExecuteCommand", False) is False
    assert ecs.problems(rendered) == []
    rendered.service_definition["enableExecuteCommand"] = True
    found = [str(p) for p in ecs.problems(rendered)]
    for path in ("/managed-agents", "/var/lib/amazon/ssm", "/var/log/amazon/ssm"):
        assert f"containerDefinitions[{service}]: ECS Exec without {path} writable" in found
    assert "containerDefinitions[xray-daemon]: ECS Exec on a writable root" in found


def test_the_bastion_task_definition_is_valid_for_register_task_definition() -> None:
    """The bastion's properties, as the API takes them, against the pinned botocore model."""
    from botocore.session import get_session  # noqa: PLC0415
    from botocore.validate import ParamValidator  # noqa: PLC0415

    from tests.infra.cfn import resolve  # noqa: PLC0415

    names = {
        "EnvName": "dev",
        "ImageTag": "dev-0a1b2c3",
        "CpuArchitecture": "ARM64",
        "BastionLifetimeSeconds": "14400",
        "AWS::AccountId": "123456789012",
        "AWS::Region": "ap-northeast-1",
        "AWS::Partition": "aws",
        "SessionLogGroup": "/sbcntr/dev/operator-sessions",
        "BastionExecutionRole.Arn": "arn:aws:iam::123456789012:role/sbcntr-dev-bastion-execution",
        "BastionTaskRole.Arn": "arn:aws:iam::123456789012:role/sbcntr-dev-bastion-task",
        "import:sbcntr-dev-DatabaseUrl": ENV["DATABASE_URL"],
        "import:sbcntr-dev-DbSecretArn": ENV["DB_SECRET_ARN"],
    }
    raw = operations_rules._camel(
        resolve(template("operations")["Resources"]["BastionTaskDefinition"]["Properties"], names)
    )
    raw.pop("tags")
    for container in raw["containerDefinitions"]:
        container["command"] = [str(c) for c in container["command"]]
    model = get_session().get_service_model("ecs")
    report = ParamValidator().validate(
        raw, model.operation_model("RegisterTaskDefinition").input_shape
    )
    assert not report.has_errors(), report.generate_report()
    assert json.dumps(raw).count("/var/lib/amazon/ssm") == 1


def test_each_experiment_template_is_valid_for_create_experiment_template() -> None:
    """drills.yml's experiments, as the FIS API takes them, against the pinned botocore model."""
    from botocore.session import get_session  # noqa: PLC0415
    from botocore.validate import ParamValidator  # noqa: PLC0415

    from tests.infra.cfn import resolve, resources  # noqa: PLC0415

    names: dict[str, Any] = {
        "EnvName": "dev",
        "StopTaskPercent": "50",
        "FaultMinutes": "5",
        "LatencyMilliseconds": "200",
        "AWS::AccountId": "123456789012",
        "AWS::Region": "ap-northeast-1",
        "AWS::Partition": "aws",
        "ExperimentRole.Arn": "arn:aws:iam::123456789012:role/sbcntr-dev-drills",
        "ExperimentLogGroup.Arn": "arn:aws:logs:ap-northeast-1:123456789012:log-group:x:*",
        "import:sbcntr-dev-PublicSubnets": "subnet-0p1,subnet-0p2",
        "import:sbcntr-dev-PrivateSubnet1": "subnet-0a1",
        "import:sbcntr-dev-DataSubnets": "subnet-0d1,subnet-0d2",
        "import:sbcntr-dev-VpcId": "vpc-0a",
    }
    model = get_session().get_service_model("fis")
    shape = model.operation_model("CreateExperimentTemplate").input_shape
    experiments = resources(template("drills"), "AWS::FIS::ExperimentTemplate")
    assert len(experiments) == 7
    for name, experiment in experiments.items():
        # Tag keys and target names are free-form: their case changes nothing here.
        params = operations_rules._camel(resolve(experiment["Properties"], names))
        params["clientToken"] = name
        report = ParamValidator().validate(params, shape)
        assert not report.has_errors(), (name, report.generate_report())


def test_the_bastion_admits_nothing() -> None:
    """Sessions come through Session Manager: an inbound rule on the bastion is a break."""
    from tests.infra import rules  # noqa: PLC0415

    broken = templates()
    props(broken, "operations", "BastionSecurityGroup")["SecurityGroupIngress"] = [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIp": "203.0.113.0/24"}
    ]
    assert "BastionSecurityGroup: unexpected ingress ('tcp', 22, 22, '203.0.113.0/24')" in (
        rules.security_group_problems({"operations": broken["operations"]})
    )
    assert not [
        p
        for p in rules.security_group_problems({"operations": templates()["operations"]})
        if p.startswith("BastionSecurityGroup")
    ]
