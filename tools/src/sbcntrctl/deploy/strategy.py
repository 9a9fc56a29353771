"""The deployment strategy of a service definition: rolling, blue/green or canary.

``DEPLOYMENT_STRATEGY`` picks it when the definitions are rendered (ROLLING by
default; docs/release.md says which environment uses which and why). Blue/green
and canary run the new revision beside the old one behind an alternate target
group, send it the test listener's traffic first (where the lifecycle hook runs
the smoke checks), then production traffic, and keep the old revision for the
bake time, during which the rollback alarms still send traffic back at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sbcntrctl.deploy.aws import Client
from sbcntrctl.deploy.verify import Problem

# Deployment strategies the definitions render (DEPLOYMENT_STRATEGY, docs/release.md).
STRATEGIES = ("ROLLING", "BLUE_GREEN", "CANARY")
# bakeTimeInMinutes: AWS takes 0..1440; below 3 the rollback alarms (3 periods of
# 60 s in infra/monitoring.yml) could not fire before the old revision is gone.
MIN_BAKE_MINUTES, MAX_BAKE_MINUTES = 3, 1440
TEST_STAGE = "POST_TEST_TRAFFIC_SHIFT"
MAX_TENTHS, TOLERANCE = 1000, 1e-9  # canaryPercent: 0.1..100.0 in steps of 0.1
LAMBDA_ARN = re.compile(
    r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9_$-]+)?$"
)
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
# AdvancedConfiguration of an Application Load Balancer: key, ARN pattern, what it is.
ADVANCED = (
    (
        "alternateTargetGroupArn",
        r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:targetgroup/",
        "a target group ARN",
    ),
    (
        "productionListenerRule",
        r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:listener-rule/app/",
        "an Application Load Balancer listener rule ARN",
    ),
    (
        "testListenerRule",
        r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:listener-rule/app/",
        "an Application Load Balancer listener rule ARN",
    ),
    ("roleArn", ROLE_ARN.pattern, "an IAM role ARN (the ECS infrastructure role)"),
)


def problems(sd: dict[str, Any]) -> list[Problem]:
    """The rules of the deployment strategy AWS documents and the model does not hold.

    Amazon ECS API Reference, DeploymentConfiguration (``bakeTimeInMinutes`` is
    required with BLUE_GREEN; ``canaryConfiguration`` only with CANARY),
    CanaryConfiguration (``canaryPercent`` a multiple of 0.1 in 0.1..100,
    ``canaryBakeTimeInMinutes`` 0..1440), AdvancedConfiguration and
    DeploymentLifecycleHook; Amazon ECS Developer Guide, "Application Load Balancer
    resources for blue/green, linear, and canary deployments" and "Lifecycle hooks
    for Amazon ECS service deployments".
    """
    config = sd.get("deploymentConfiguration", {})
    strategy = config.get("strategy", "ROLLING")
    where = "deploymentConfiguration"
    if strategy not in STRATEGIES:
        return [
            Problem(
                f"{where}.strategy",
                f"{strategy!r}: the definitions offer {', '.join(STRATEGIES)} (docs/release.md)",
            )
        ]
    problems = []
    if "canaryConfiguration" in config and strategy != "CANARY":
        problems.append(Problem(f"{where}.canaryConfiguration", "only with strategy CANARY"))
    if strategy == "ROLLING":
        return problems
    bake = config.get("bakeTimeInMinutes")
    if not isinstance(bake, int) or not MIN_BAKE_MINUTES <= bake <= MAX_BAKE_MINUTES:
        problems.append(
            Problem(
                f"{where}.bakeTimeInMinutes",
                f"{bake!r} (BAKE_TIME_MINUTES): {strategy} needs {MIN_BAKE_MINUTES}.."
                f"{MAX_BAKE_MINUTES} minutes (the rollback alarms need "
                f"{MIN_BAKE_MINUTES} minutes of errors to fire)",
            )
        )
    if strategy == "CANARY":
        problems += _canary(config.get("canaryConfiguration"))
    problems += _advanced(sd.get("loadBalancers", []))
    problems += _hooks(config.get("lifecycleHooks", []))
    return problems


def _canary(canary: Any) -> list[Problem]:
    where = "deploymentConfiguration.canaryConfiguration"
    if not isinstance(canary, dict):
        return [Problem(where, "CANARY needs canaryPercent and canaryBakeTimeInMinutes")]
    problems = []
    percent = canary.get("canaryPercent")
    if not _tenths(percent):
        problems.append(
            Problem(f"{where}.canaryPercent", f"{percent!r}: a multiple of 0.1 from 0.1 to 100")
        )
    bake = canary.get("canaryBakeTimeInMinutes")
    if not isinstance(bake, int) or not 0 <= bake <= MAX_BAKE_MINUTES:
        problems.append(
            Problem(f"{where}.canaryBakeTimeInMinutes", f"{bake!r}: 0..{MAX_BAKE_MINUTES} minutes")
        )
    return problems


def _tenths(percent: Any) -> bool:
    """``percent`` is a multiple of 0.1 from 0.1 to 100 (CanaryConfiguration.canaryPercent)."""
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        return False
    tenths = round(percent * 10)
    return abs(percent * 10 - tenths) < TOLERANCE and 1 <= tenths <= MAX_TENTHS


def _advanced(load_balancers: list[dict[str, Any]]) -> list[Problem]:
    """Each load balancer: the alternate target group, both listener rules and the role."""
    if not load_balancers:
        return [Problem("loadBalancers", "blue/green shifts traffic on a load balancer: none")]
    problems = []
    for i, lb in enumerate(load_balancers):
        where = f"loadBalancers[{i}].advancedConfiguration"
        advanced = lb.get("advancedConfiguration")
        if not isinstance(advanced, dict):
            problems.append(Problem(where, "blue/green needs the alternate target group and rules"))
            continue
        for key, pattern, what in ADVANCED:
            value = advanced.get(key, "")
            if not re.match(pattern, str(value)):
                problems.append(Problem(f"{where}.{key}", f"{value!r} is not {what}"))
        if advanced.get("alternateTargetGroupArn") == lb.get("targetGroupArn"):
            problems.append(
                Problem(
                    f"{where}.alternateTargetGroupArn",
                    "the primary target group: the alternate is the other one",
                )
            )
        if advanced.get("productionListenerRule") == advanced.get("testListenerRule"):
            problems.append(
                Problem(
                    f"{where}.testListenerRule",
                    "the production rule: test traffic goes through its own listener",
                )
            )
    return problems


def _hooks(hooks: list[dict[str, Any]]) -> list[Problem]:
    """The test-traffic hook is there and each Lambda hook can be invoked."""
    where = "deploymentConfiguration.lifecycleHooks"
    problems = []
    for i, hook in enumerate(hooks):
        if hook.get("targetType", "AWS_LAMBDA") != "AWS_LAMBDA":
            continue
        if not LAMBDA_ARN.match(str(hook.get("hookTargetArn", ""))):
            problems.append(
                Problem(f"{where}[{i}].hookTargetArn", "a Lambda function ARN is required")
            )
        if not ROLE_ARN.match(str(hook.get("roleArn", ""))):
            problems.append(
                Problem(f"{where}[{i}].roleArn", "the role ECS invokes the function with")
            )
        if not hook.get("lifecycleStages"):
            problems.append(Problem(f"{where}[{i}].lifecycleStages", "name at least one stage"))
    tested = [
        h
        for h in hooks
        if h.get("targetType", "AWS_LAMBDA") == "AWS_LAMBDA"
        and TEST_STAGE in h.get("lifecycleStages", [])
    ]
    if not tested:
        # Test traffic checked before production traffic (docs/release.md).
        problems.append(
            Problem(where, f"a Lambda hook at {TEST_STAGE} checks the test listener first")
        )
    return problems


# ECS waits this long for a lifecycle hook that sets no timeoutConfiguration
# (DeploymentLifecycleHookTimeoutConfiguration: default 1440 minutes).
HOOK_TIMEOUT_MINUTES = 1440


def extra_seconds(config: Mapping[str, Any]) -> float:
    """How much longer than a rolling update a deployment of ``config`` (a
    deploymentConfiguration) may take: its bake times, and each lifecycle hook's
    timeout at each of its stages (ECS waits that long for a hook that does not
    answer). 0 for ROLLING."""
    if config.get("strategy", "ROLLING") == "ROLLING":
        return 0.0
    minutes = config.get("bakeTimeInMinutes", 0)
    minutes += config.get("canaryConfiguration", {}).get("canaryBakeTimeInMinutes", 0)
    for hook in config.get("lifecycleHooks", []):
        timeout = hook.get("timeoutConfiguration", {}).get("timeoutInMinutes", HOOK_TIMEOUT_MINUTES)
        minutes += timeout * len(hook.get("lifecycleStages", []))
    return float(minutes * 60)


def back_to_rolling(service: Mapping[str, Any] | None, sd: Mapping[str, Any]) -> list[Problem]:
    """A ROLLING definition for a service whose production traffic ECS moved elsewhere.

    A service deployed with BLUE_GREEN or CANARY names its production listener
    rule (DescribeServices, ``loadBalancers[].advancedConfiguration``). A
    rolling update registers its tasks in the definition's ``targetGroupArn``
    only; when the rule forwards production traffic (a weight above 0) to
    another target group, the new tasks would get none of it while ECS drains
    the old ones: an outage. Reads the rule's weights (Elastic Load Balancing
    API Reference, DescribeRules, ``ForwardConfig.TargetGroups``; IAM:
    elasticloadbalancing:DescribeRules).
    """
    if service is None or sd.get("deploymentConfiguration", {}).get("strategy") != "ROLLING":
        return []
    rules = [
        lb["advancedConfiguration"]["productionListenerRule"]
        for lb in service.get("loadBalancers", [])
        if lb.get("advancedConfiguration", {}).get("productionListenerRule")
    ]
    if not rules:
        return []
    registered = {lb.get("targetGroupArn") for lb in sd.get("loadBalancers", [])}
    problems = []
    for rule in Client("elbv2").describe_rules(RuleArns=rules)["Rules"]:
        for action in rule.get("Actions", []):
            groups = action.get("ForwardConfig", {}).get("TargetGroups", [])
            if not groups and action.get("TargetGroupArn"):
                groups = [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}]
            serving = [g["TargetGroupArn"] for g in groups if g.get("Weight", 1) > 0]
            for arn in serving:
                if arn not in registered:
                    problems.append(
                        Problem(
                            "deploymentConfiguration.strategy",
                            f"ROLLING registers tasks in {_names(registered)} only, and the "
                            f"production rule sends traffic to {_names({arn})}: deploy once "
                            "more with BLUE_GREEN or CANARY until the primary target group has "
                            "all of it (docs/release.md)",
                        )
                    )
    return problems


def _names(arns: set[Any]) -> str:
    """``targetgroup/<name>/<id>`` of target group ARNs."""
    return ", ".join(sorted(str(arn).split(":")[-1] for arn in arns))
