"""What a BLUE_GREEN or CANARY service definition names, checked in the account.

:mod:`sbcntrctl.deploy.strategy` checks the shape of the definition offline;
ECS accepts a definition whose resources are missing or do not fit together,
and the deployment then fails halfway, or shifts production traffic where it
should not. For each ``loadBalancers[].advancedConfiguration``:

- the alternate target group exists, in the primary's VPC, with its port,
  protocol and health check path, and is attached to the load balancer of the
  listener rules (Elastic Load Balancing API Reference, DescribeTargetGroups);
- the production and test listener rules exist (DescribeRules); the production
  rule forwards to exactly the primary and the alternate target groups (ECS
  moves the weights between the two); the test rule is on another listener of
  that load balancer (DescribeListeners): test traffic never reaches users;
- the infrastructure role exists and trusts ``ecs.amazonaws.com`` (IAM API
  Reference, GetRole).

For each Lambda lifecycle hook: the function exists (Lambda API Reference,
GetFunctionConfiguration) and the role ECS invokes it with exists and trusts
``ecs.amazonaws.com``. Amazon ECS Developer Guide, "Application Load Balancer
resources for blue/green, linear, and canary deployments", "Amazon ECS
infrastructure IAM role for load balancers" and "Lifecycle hooks for Amazon ECS
service deployments". A ROLLING definition makes none of these calls.
"""

from __future__ import annotations

from typing import Any

from sbcntrctl.deploy.aws import AwsError, Client, error_code
from sbcntrctl.deploy.verify import Problem

ECS_PRINCIPAL = "ecs.amazonaws.com"
# Target group settings the alternate must share with the primary: ECS registers the
# same tasks in either, and the load balancer must find them healthy the same way.
SAME = (("VpcId", "VPC"), ("Port", "port"), ("Protocol", "protocol"))
SAME_HEALTH = (("HealthCheckPath", "health check path"),)


def problems(sd: dict[str, Any]) -> list[Problem]:
    """Every problem of the account resources a BLUE_GREEN or CANARY ``sd`` names;
    ``[]`` (and no AWS call) for ROLLING."""
    config = sd.get("deploymentConfiguration", {})
    if config.get("strategy", "ROLLING") == "ROLLING":
        return []
    elbv2, iam = Client("elbv2"), Client("iam")
    found = []
    for i, lb in enumerate(sd.get("loadBalancers", [])):
        advanced = lb.get("advancedConfiguration")
        if isinstance(advanced, dict):
            where = f"loadBalancers[{i}]"
            found += _load_balancer(elbv2, where, lb.get("targetGroupArn", ""), advanced)
            where = f"{where}.advancedConfiguration"
            found += _role(iam, f"{where}.roleArn", advanced.get("roleArn", ""))
    for i, hook in enumerate(config.get("lifecycleHooks", [])):
        if hook.get("targetType", "AWS_LAMBDA") != "AWS_LAMBDA":
            continue
        where = f"deploymentConfiguration.lifecycleHooks[{i}]"
        found += _function(f"{where}.hookTargetArn", hook.get("hookTargetArn", ""))
        found += _role(iam, f"{where}.roleArn", hook.get("roleArn", ""))
    return found


def _load_balancer(
    elbv2: Client, balancer_at: str, primary_arn: str, advanced: dict[str, Any]
) -> list[Problem]:
    """The target groups and listener rules of ``loadBalancers[i]`` (``balancer_at``)."""
    where = f"{balancer_at}.advancedConfiguration"
    alternate_arn = advanced.get("alternateTargetGroupArn", "")
    primary = _one(elbv2, "describe_target_groups", "TargetGroups", TargetGroupArns=[primary_arn])
    alternate = _one(
        elbv2, "describe_target_groups", "TargetGroups", TargetGroupArns=[alternate_arn]
    )
    found = []
    if primary is None:
        found.append(
            Problem(f"{balancer_at}.targetGroupArn", f"{_name(primary_arn)} does not exist")
        )
    if alternate is None:
        found.append(
            Problem(
                f"{where}.alternateTargetGroupArn",
                f"{_name(alternate_arn)} does not exist: deploy the edge stack "
                "(sbcntrctl infra deploy ENV --only edge)",
            )
        )
    elif primary is not None:
        found += _alike(f"{where}.alternateTargetGroupArn", primary, alternate)
    rules, listeners = {}, {}
    for key in ("productionListenerRule", "testListenerRule"):
        arn = advanced.get(key, "")
        rule = _one(elbv2, "describe_rules", "Rules", RuleArns=[arn])
        if rule is None:
            found.append(Problem(f"{where}.{key}", f"{_name(arn)} does not exist"))
            continue
        rules[key] = rule
        listener_arn = listener_of(arn)
        listener = _one(elbv2, "describe_listeners", "Listeners", ListenerArns=[listener_arn])
        if listener is not None:
            listeners[key] = listener
    production = rules.get("productionListenerRule")
    if production is not None:
        found += _forwards(
            f"{where}.productionListenerRule", production, primary_arn, alternate_arn
        )
    found += _listeners(where, listeners)
    balancer = listeners.get("productionListenerRule", {}).get("LoadBalancerArn")
    if alternate is not None and balancer and balancer not in alternate.get("LoadBalancerArns", []):
        found.append(
            Problem(
                f"{where}.alternateTargetGroupArn",
                f"{_name(alternate_arn)} is not attached to {_name(balancer)}, the load "
                "balancer of the listener rules",
            )
        )
    return found


def _one(client: Client, method: str, key: str, **params: Any) -> dict[str, Any] | None:
    """The one resource ``client.method(**params)`` describes; None when it does not exist
    (Elastic Load Balancing answers ``TargetGroupNotFound``, ``RuleNotFound`` or
    ``ListenerNotFound`` for an ARN it does not hold)."""
    try:
        described = getattr(client, method)(**params)[key]
    except AwsError as exc:
        if error_code(exc).endswith("NotFound"):
            return None
        raise
    return dict(described[0]) if described else None


def _alike(where: str, primary: dict[str, Any], alternate: dict[str, Any]) -> list[Problem]:
    return [
        Problem(
            where,
            f"{alternate['TargetGroupName']} has {what} {alternate.get(key)!r}, the primary "
            f"{primary['TargetGroupName']} {primary.get(key)!r}: ECS registers the same tasks "
            "in both",
        )
        for key, what in SAME + SAME_HEALTH
        if alternate.get(key) != primary.get(key)
    ]


def listener_of(rule_arn: str) -> str:
    """The listener ARN of a listener rule ARN (Service Authorization Reference, Elastic
    Load Balancing V2 resource types: ``listener-rule/app/<lb>/<lb-id>/<listener-id>/<id>``
    belongs to ``listener/app/<lb>/<lb-id>/<listener-id>``)."""
    return rule_arn.replace(":listener-rule/", ":listener/", 1).rsplit("/", 1)[0]


def _forwards(where: str, rule: dict[str, Any], primary: str, alternate: str) -> list[Problem]:
    """The production rule forwards to the primary and the alternate target groups only."""
    groups = set()
    for action in rule.get("Actions", []):
        if action.get("Type") != "forward":
            continue
        groups |= {
            g["TargetGroupArn"] for g in action.get("ForwardConfig", {}).get("TargetGroups", [])
        }
        if action.get("TargetGroupArn"):
            groups.add(action["TargetGroupArn"])
    if groups == {primary, alternate}:
        return []
    return [
        Problem(
            where,
            f"forwards to {_names(groups) or 'no target group'}, not to exactly "
            f"{_names({primary, alternate})}: ECS shifts traffic between those two",
        )
    ]


def _listeners(where: str, listeners: dict[str, dict[str, Any]]) -> list[Problem]:
    production, test = listeners.get("productionListenerRule"), listeners.get("testListenerRule")
    if production is None or test is None:
        return []
    if production["ListenerArn"] == test["ListenerArn"]:
        return [
            Problem(
                f"{where}.testListenerRule",
                f"on the production rule's listener (port {production.get('Port')}): test "
                "traffic needs a listener of its own, which users do not reach",
            )
        ]
    if production.get("LoadBalancerArn") != test.get("LoadBalancerArn"):
        return [
            Problem(
                f"{where}.testListenerRule",
                f"on {_name(test.get('LoadBalancerArn', ''))}, the production rule on "
                f"{_name(production.get('LoadBalancerArn', ''))}: both on the same load balancer",
            )
        ]
    return []


def _function(where: str, arn: str) -> list[Problem]:
    try:
        Client("lambda").get_function_configuration(FunctionName=arn)
    except AwsError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        return [
            Problem(
                where,
                f"function {arn.split(':function:', 1)[-1]} does not exist: deploy the "
                "deploy-hook stack (sbcntrctl infra deploy ENV --only deploy-hook)",
            )
        ]
    return []


def _role(iam: Client, where: str, arn: str) -> list[Problem]:
    """The role exists and lets ECS assume it."""
    name = arn.rsplit("/", 1)[-1]
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except AwsError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        return [Problem(where, f"role {name} does not exist")]
    if not trusts(role.get("AssumeRolePolicyDocument", {}), ECS_PRINCIPAL):
        return [Problem(where, f"role {name} does not trust {ECS_PRINCIPAL}: ECS cannot assume it")]
    return []


def trusts(document: Any, service: str) -> bool:
    """Whether a trust policy lets ``service`` call ``sts:AssumeRole`` (an Allow
    statement with that service principal; botocore decodes GetRole's document)."""
    if not isinstance(document, dict):
        return False
    statements = document.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        principals = statement.get("Principal", {})
        services = principals.get("Service", []) if isinstance(principals, dict) else []
        actions = statement.get("Action", [])
        if (
            statement.get("Effect") == "Allow"
            and service in ([services] if isinstance(services, str) else services)
            and {"sts:AssumeRole", "sts:*", "*"}
            & set([actions] if isinstance(actions, str) else actions)
        ):
            return True
    return False


def _name(arn: str) -> str:
    """``targetgroup/<name>/<id>``, ``listener-rule/app/...``: the resource part of an ARN."""
    return str(arn).split(":", 5)[-1]


def _names(arns: set[str]) -> str:
    return ", ".join(sorted(_name(arn) for arn in arns))
