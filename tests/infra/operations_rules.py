"""Rules for operator access (operations.yml) and the failure drills (drills.yml).

Each returns the problems it finds; tests/infra/test_operations.py shows each
one passing on the templates as they are and naming a break made on purpose.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sbcntrctl.deploy import exec_access
from tests.infra.cfn import resolve, resources

# ECS developer guide, "Monitor Amazon ECS containers with ECS Exec", IAM permissions.
SSMMESSAGES_ACTIONS = frozenset(
    {
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    }
)
# Actions that take no resource-level permission (Service Authorization Reference).
UNSCOPABLE = frozenset(
    {
        "ecr:GetAuthorizationToken",
        "logs:DescribeLogGroups",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
        "ssm:ListCommands",
        "ssm:CancelCommand",
        "ssm:CreateActivation",
        "ssm:AddTagsToResource",
        "ssm:DeleteActivation",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
        "ec2:DescribeNetworkAcls",
        "ec2:DescribeManagedPrefixLists",
        "logs:CreateLogDelivery",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "tag:GetResources",
        "fis:ListExperimentTemplates",
        "fis:ListExperiments",
        "ecs:DescribeTaskDefinition",
        "cloudwatch:GetMetricData",
        "application-autoscaling:DescribeScalingActivities",
        "cloudformation:ListExports",
    }
)
USER_FACING_ALARMS = ("public-5xx-rate", "frontend-p99-latency")
DRILL_ACTIONS = ("aws:ecs:stop-task", "aws:ecs:task-cpu-stress", "aws:ecs:task-network-latency")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(policy: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(_as_list(policy.get("Statement", [])))


def writable_path_problems(
    name: str, definition: Mapping[str, Any], exec_enabled: bool
) -> list[str]:
    """``deploy verify``'s rule (sbcntrctl.deploy.exec_access), named for the template."""
    return [
        f"{name}/{p.field.removeprefix('containerDefinitions[').rstrip(']')}: {p.message}"
        for p in exec_access.problems(definition, exec_enabled)
    ]


def _camel(value: Any) -> Any:
    """A CloudFormation task definition's properties in the API's camelCase."""
    if isinstance(value, list):
        return [_camel(v) for v in value]
    if isinstance(value, Mapping):
        return {k[:1].lower() + k[1:]: _camel(v) for k, v in value.items()}
    return value


def _condition(tpl: Mapping[str, Any], name: str, parameters: Mapping[str, str]) -> bool:
    def evaluate(expr: Any) -> Any:
        if isinstance(expr, Mapping):
            (function, argument), *_ = expr.items()
            if function == "Ref":
                return parameters[argument]
            if function == "Condition":
                return evaluate(tpl["Conditions"][argument])
            if function == "Fn::Equals":
                return evaluate(argument[0]) == evaluate(argument[1])
            if function == "Fn::Not":
                return not evaluate(argument[0])
            if function == "Fn::And":
                return all(evaluate(a) for a in argument)
            if function == "Fn::Or":
                return any(evaluate(a) for a in argument)
        return expr

    return bool(evaluate(tpl["Conditions"][name]))


def operations_problems(operations: Mapping[str, Any]) -> list[str]:
    """The bastion: exec only with the agent's paths writable, exactly the ssmmessages
    actions, every session logged encrypted, off in prod unless asked, scoped grants."""
    problems = []
    for name, td in resources(operations, "AWS::ECS::TaskDefinition").items():
        problems += writable_path_problems(name, _camel(td["Properties"]), exec_enabled=True)
    for name, cluster in resources(operations, "AWS::ECS::Cluster").items():
        config = cluster["Properties"].get("Configuration", {}).get("ExecuteCommandConfiguration")
        logging = (config or {}).get("LogConfiguration", {})
        if not config or config.get("Logging") != "OVERRIDE" or not logging:
            problems.append(f"{name}: ECS Exec sessions are not logged to a place of ours")
            continue
        if not config.get("KmsKeyId"):
            problems.append(f"{name}: session data channel not encrypted with our key")
        if logging.get("CloudWatchEncryptionEnabled") is not True:
            problems.append(f"{name}: session log must be written encrypted")
        group = logging.get("CloudWatchLogGroupName", {}).get("Ref", "")
        if not operations["Resources"].get(group, {}).get("Properties", {}).get("KmsKeyId"):
            problems.append(f"{name}: the session log group is not KMS-encrypted")
    for name, role in resources(operations, "AWS::IAM::Role").items():
        actions = {
            action
            for policy in role["Properties"].get("Policies", [])
            for statement in _statements(policy["PolicyDocument"])
            for action in _as_list(statement["Action"])
            if str(action).startswith("ssmmessages:")
        }
        if name == "BastionTaskRole" and actions != SSMMESSAGES_ACTIONS:
            problems.append(
                f"{name}: ssmmessages actions {sorted(actions)} are not exactly ECS Exec's"
            )
        if name != "BastionTaskRole" and actions:
            problems.append(f"{name}: ssmmessages actions on a role that runs no session")
    problems += _unscoped(operations)
    for env, access, wanted in (
        ("prod", "non-prod", False),
        ("prod", "never", False),
        ("prod", "always", True),
        ("dev", "non-prod", True),
        ("stg", "never", False),
    ):
        parameters = {"EnvName": env, "OperatorAccess": access}
        if _condition(operations, "WithBastion", parameters) != wanted:
            problems.append(f"bastion in {env} with OperatorAccess={access}: should be {wanted}")
    for name, resource in operations["Resources"].items():
        if (
            resource["Type"]
            in (
                "AWS::ECS::TaskDefinition",
                "AWS::ECS::Cluster",
                "AWS::IAM::ManagedPolicy",
            )
            and resource.get("Condition") != "WithBastion"
        ):
            problems.append(f"{name}: exists whatever OperatorAccess says")
    return problems


def _policies(tpl: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for name, role in resources(tpl, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            found.setdefault(name, []).extend(_statements(policy["PolicyDocument"]))
    for kind in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
        for name, policy in resources(tpl, kind).items():
            found.setdefault(name, []).extend(_statements(policy["Properties"]["PolicyDocument"]))
    return found


def _unscoped(tpl: Mapping[str, Any]) -> list[str]:
    """Statements allowing ``*`` resources for actions that can be scoped."""
    problems = []
    for name, statements in _policies(tpl).items():
        for statement in statements:
            if statement.get("Effect") != "Allow" or _as_list(statement.get("Resource")) != ["*"]:
                continue
            if "ecs:cluster" in json.dumps(statement.get("Condition", {})):
                continue  # held to one cluster by its condition
            for action in _as_list(statement["Action"]):
                if action not in UNSCOPABLE:
                    problems.append(f"{name}: {action} on every resource")
    return problems


def drills_problems(drills: Mapping[str, Any], monitoring: Mapping[str, Any]) -> list[str]:
    """Each service has each drill; every experiment stops on the user-facing alarms the
    monitoring stack really creates; the role is scoped to this environment."""
    problems = []
    names = {"EnvName": "dev", "AWS::Partition": "aws", "AWS::Region": "ap-northeast-1"}
    names["AWS::AccountId"] = "123456789012"
    alarms = {
        resolve(a["Properties"]["AlarmName"], names)
        for a in resources(monitoring, "AWS::CloudWatch::Alarm").values()
    }
    prefix = "arn:aws:cloudwatch:ap-northeast-1:123456789012:alarm:"
    wanted = {f"sbcntr-dev-{alarm}" for alarm in USER_FACING_ALARMS}
    covered: set[tuple[str, str]] = set()
    templates = resources(drills, "AWS::FIS::ExperimentTemplate")
    for name, experiment in templates.items():
        props = experiment["Properties"]
        stops = {
            str(resolve(s["Value"], names)).removeprefix(prefix)
            for s in props.get("StopConditions", [])
            if s.get("Source") == "aws:cloudwatch:alarm"
        }
        for alarm in sorted(stops - alarms):
            problems.append(f"{name}: stop condition {alarm} is no alarm of monitoring.yml")
        for alarm in sorted(wanted - stops):
            problems.append(f"{name}: does not stop on {alarm}")
        if props.get("RoleArn") != {"Fn::GetAtt": ["ExperimentRole", "Arn"]}:
            problems.append(f"{name}: not run by the drills' own role")
        for target in props.get("Targets", {}).values():
            if target["ResourceType"] == "aws:ecs:task":
                cluster = resolve(target.get("Parameters", {}).get("cluster"), names)
                if cluster != "sbcntr-dev":
                    problems.append(f"{name}: targets tasks outside the environment's cluster")
        for action in props.get("Actions", {}).values():
            for target in action.get("Targets", {}).values():
                spec = props["Targets"].get(target, {})
                service = str(spec.get("Parameters", {}).get("service", ""))
                covered.add((action["ActionId"], service.removeprefix("sbcntr-")))
            if (
                action["ActionId"] == "aws:ecs:task-network-latency"
                and action.get("Parameters", {}).get("useEcsFaultInjectionEndpoints") != "true"
            ):
                problems.append(
                    f"{name}: network faults on Fargate need the ECS fault injection endpoints"
                )
    for action in DRILL_ACTIONS:
        for service in ("frontend", "backend"):
            if (action, service) not in covered:
                problems.append(f"no {action} drill for the {service}")
    problems += _unscoped(drills)
    for statement in _policies(drills).get("ExperimentRole", []):
        for resource in _as_list(statement.get("Resource")):
            text = str(resource)
            if ":ecs:" in text and not re.search(r"[:/]sbcntr-\$\{EnvName\}(/|['\"]|$)", text):
                problems.append(f"ExperimentRole: {statement.get('Sid')} reaches other clusters")
    return problems
