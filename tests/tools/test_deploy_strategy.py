"""DEPLOYMENT_STRATEGY: the definitions each strategy renders, and the rules verify holds them to.

Every rendered definition is checked against the pinned botocore model
(CreateService, UpdateService, PutScalingPolicy), then against the rules AWS
documents and the model does not hold, each broken once (a mutation) to show
the check catches it: Amazon ECS API Reference, DeploymentConfiguration,
CanaryConfiguration, AdvancedConfiguration, DeploymentLifecycleHook; Amazon ECS
Developer Guide, "Application Load Balancer resources for blue/green, linear,
and canary deployments", "Lifecycle hooks for Amazon ECS service deployments",
"Amazon ECS deployment failure detection" (the circuit breaker and the alarms
watch blue/green deployments too); Application Auto Scaling API Reference,
CustomizedMetricSpecification, TargetTrackingMetricDataQuery; Application Auto
Scaling User Guide, "Create a target tracking scaling policy for Application
Auto Scaling using metric math".
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from sbcntrctl.deploy import ecs, metric_math, strategy, template, verify
from sbcntrctl.infra import cloudformation
from sbcntrctl.infra.stacks import BLUE_GREEN, DEPLOYMENT_SETTINGS, FROM_OUTPUTS, OPTIONAL, Stack
from sbcntrctl.release import rollout
from tests.tools.deploy_support import BLUE_GREEN_ENV, ENV, TASKDEFS, stubbed_client

SERVICES = ("frontend", "backend")
STRATEGIES = ("ROLLING", "BLUE_GREEN", "CANARY")
Mutation = Callable[[dict[str, Any]], object]


def rendered(service: str, strategy_name: str) -> ecs.Rendered:
    env = ENV if strategy_name == "ROLLING" else {**BLUE_GREEN_ENV}
    return ecs.render(service, {**env, "DEPLOYMENT_STRATEGY": strategy_name}, TASKDEFS)


def test_rolling_renders_without_any_blue_green_variable_as_before() -> None:
    assert not BLUE_GREEN & set(ENV)
    for service in SERVICES:
        done = ecs.render(service, ENV, TASKDEFS)  # DEPLOYMENT_STRATEGY unset: ROLLING
        sd = done.service_definition
        assert sd["loadBalancers"] == [
            {
                "targetGroupArn": ENV[f"{service.upper()}_TARGET_GROUP_ARN"],
                "containerName": service,
                "containerPort": 8080 if service == "frontend" else 8081,
            }
        ]
        config = sd["deploymentConfiguration"]
        assert set(config) == {
            "strategy",
            "deploymentCircuitBreaker",
            "alarms",
            "minimumHealthyPercent",
            "maximumPercent",
        }
        assert config["strategy"] == "ROLLING"
        assert config["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
        assert (config["minimumHealthyPercent"], config["maximumPercent"]) == (100, 200)
        metrics = done.scaling["policies"][1]["TargetTrackingScalingPolicyConfiguration"][
            "CustomizedMetricSpecification"
        ]["Metrics"]
        assert [m["Id"] for m in metrics] == ["requests_per_target", "requests", "healthy"]
        assert metrics[0]["Expression"] == "FILL(requests, 0) / healthy"
        assert ecs.problems(done) == []


def test_every_blue_green_variable_is_an_optional_stack_output() -> None:
    """ROLLING must deploy from stacks without them (an edge stack of before, no hook
    stack); BLUE_GREEN names each missing one (must_env inside the strategy's if)."""
    assert set(FROM_OUTPUTS) >= BLUE_GREEN
    assert OPTIONAL >= BLUE_GREEN
    with pytest.raises(template.MissingVariables) as missing:
        ecs.render("frontend", {**ENV, "DEPLOYMENT_STRATEGY": "BLUE_GREEN"}, TASKDEFS)
    assert set(missing.value.names) == {
        "FRONTEND_ALTERNATE_TARGET_GROUP_ARN",
        "FRONTEND_ALTERNATE_TARGET_GROUP_FULL_NAME",
        "FRONTEND_PRODUCTION_RULE_ARN",
        "FRONTEND_TEST_RULE_ARN",
        "ECS_LB_INFRASTRUCTURE_ROLE_ARN",
        "DEPLOY_HOOK_FUNCTION_ARN",
        "DEPLOY_HOOK_ROLE_ARN",
    }


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("strategy_name", STRATEGIES)
def test_each_strategy_renders_definitions_the_model_and_the_rules_accept(
    service: str, strategy_name: str
) -> None:
    done = rendered(service, strategy_name)
    sd = done.service_definition
    update = {k: sd[k] for k in ecs.UPDATABLE if k in sd}
    params = {"cluster": "sbcntr-dev", "service": f"sbcntr-{service}", **update}
    assert verify._model_problems("UpdateService", params) == []
    assert verify.service_definition(sd) == []  # CreateService's model, then the rules
    assert verify.scaling(done.scaling) == []  # PutScalingPolicy's model
    assert ecs.problems(done) == []
    config = sd["deploymentConfiguration"]
    assert config["strategy"] == strategy_name
    # Alarm rollback and the circuit breaker watch every strategy.
    assert config["alarms"]["rollback"] is True
    assert config["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert ("canaryConfiguration" in config) == (strategy_name == "CANARY")
    if strategy_name == "ROLLING":
        return
    assert config["bakeTimeInMinutes"] == 5
    (hook,) = config["lifecycleHooks"]
    assert hook["lifecycleStages"] == ["POST_TEST_TRAFFIC_SHIFT"]
    assert hook["hookDetails"] == {"service": service}
    assert hook["hookTargetArn"] == BLUE_GREEN_ENV["DEPLOY_HOOK_FUNCTION_ARN"]
    prefix = service.upper()
    assert sd["loadBalancers"][0]["advancedConfiguration"] == {
        "alternateTargetGroupArn": BLUE_GREEN_ENV[f"{prefix}_ALTERNATE_TARGET_GROUP_ARN"],
        "productionListenerRule": BLUE_GREEN_ENV[f"{prefix}_PRODUCTION_RULE_ARN"],
        "testListenerRule": BLUE_GREEN_ENV[f"{prefix}_TEST_RULE_ARN"],
        "roleArn": BLUE_GREEN_ENV["ECS_LB_INFRASTRUCTURE_ROLE_ARN"],
    }
    if strategy_name == "CANARY":
        assert config["canaryConfiguration"] == {"canaryPercent": 10, "canaryBakeTimeInMinutes": 5}
    # Requests per target over both target groups the service moves between.
    metrics = done.scaling["policies"][1]["TargetTrackingScalingPolicyConfiguration"][
        "CustomizedMetricSpecification"
    ]["Metrics"]
    groups = {
        d["Value"]
        for m in metrics
        if "MetricStat" in m
        for d in m["MetricStat"]["Metric"]["Dimensions"]
        if d["Name"] == "TargetGroup"
    }
    assert groups == metric_math.service_target_groups(sd)
    assert len(groups) == 2


@pytest.mark.parametrize("environment", sorted(DEPLOYMENT_SETTINGS))
def test_the_usual_environments_settings_verify(environment: str) -> None:
    settings = DEPLOYMENT_SETTINGS[environment]
    assert settings["DEPLOYMENT_STRATEGY"] in STRATEGIES
    for service in SERVICES:
        done = ecs.render(service, {**BLUE_GREEN_ENV, **settings}, TASKDEFS)
        assert ecs.problems(done) == []
    assert DEPLOYMENT_SETTINGS["prod"]["BAKE_TIME_MINUTES"] == "10"


def _set(path: str, value: Any) -> Mutation:
    """A mutation setting ``path`` (dots; list indexes as digits) to ``value``."""

    def mutate(sd: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = sd
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(sd: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = sd
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[last]

    return mutate


ADVANCED = "loadBalancers.0.advancedConfiguration"
HOOK = "deploymentConfiguration.lifecycleHooks.0"
# (case, strategy, mutation, the field the problem names)
BROKEN_STRATEGIES: list[tuple[str, str, Mutation, str]] = [
    (
        "linear-not-offered",
        "ROLLING",
        _set("deploymentConfiguration.strategy", "LINEAR"),
        "strategy",
    ),
    ("bake-missing", "BLUE_GREEN", _drop("deploymentConfiguration.bakeTimeInMinutes"), "bakeTime"),
    ("bake-too-short", "BLUE_GREEN", _set("deploymentConfiguration.bakeTimeInMinutes", 2), "bake"),
    (
        "bake-too-long",
        "BLUE_GREEN",
        _set("deploymentConfiguration.bakeTimeInMinutes", 1441),
        "bake",
    ),
    (
        "canary-with-blue-green",
        "BLUE_GREEN",
        _set("deploymentConfiguration.canaryConfiguration", {"canaryPercent": 10.0}),
        "canaryConfiguration",
    ),
    (
        "canary-percent-not-tenths",
        "CANARY",
        _set("deploymentConfiguration.canaryConfiguration.canaryPercent", 10.05),
        "canaryPercent",
    ),
    (
        "canary-percent-over-100",
        "CANARY",
        _set("deploymentConfiguration.canaryConfiguration.canaryPercent", 100.1),
        "canaryPercent",
    ),
    (
        "canary-bake-too-long",
        "CANARY",
        _set("deploymentConfiguration.canaryConfiguration.canaryBakeTimeInMinutes", 1441),
        "canaryBakeTimeInMinutes",
    ),
    (
        "canary-configuration-missing",
        "CANARY",
        _drop("deploymentConfiguration.canaryConfiguration"),
        "canaryConfiguration",
    ),
    ("no-advanced-configuration", "BLUE_GREEN", _drop(ADVANCED), "advancedConfiguration"),
    (
        "alternate-is-the-primary",
        "BLUE_GREEN",
        _set(f"{ADVANCED}.alternateTargetGroupArn", ENV["FRONTEND_TARGET_GROUP_ARN"]),
        "alternateTargetGroupArn",
    ),
    (
        "listener-arn-for-rule",
        "BLUE_GREEN",
        _set(
            f"{ADVANCED}.productionListenerRule",
            "arn:aws:elasticloadbalancing:ap-northeast-1:123456789012:listener/app/p/1/a",
        ),
        "productionListenerRule",
    ),
    (
        "test-rule-is-production-rule",
        "BLUE_GREEN",
        _set(f"{ADVANCED}.testListenerRule", BLUE_GREEN_ENV["FRONTEND_PRODUCTION_RULE_ARN"]),
        "testListenerRule",
    ),
    ("no-infrastructure-role", "CANARY", _drop(f"{ADVANCED}.roleArn"), "roleArn"),
    ("no-hook", "BLUE_GREEN", _set("deploymentConfiguration.lifecycleHooks", []), "lifecycleHooks"),
    (
        "hook-after-production-traffic",
        "BLUE_GREEN",
        _set(f"{HOOK}.lifecycleStages", ["POST_PRODUCTION_TRAFFIC_SHIFT"]),
        "lifecycleHooks",
    ),
    (
        "hook-not-a-function",
        "BLUE_GREEN",
        _set(f"{HOOK}.hookTargetArn", "sbcntr-hook"),
        "hookTargetArn",
    ),
    ("hook-without-role", "CANARY", _drop(f"{HOOK}.roleArn"), "roleArn"),
]


@pytest.mark.parametrize(
    ("case", "strategy_name", "mutate", "field"),
    BROKEN_STRATEGIES,
    ids=[c[0] for c in BROKEN_STRATEGIES],
)
def test_verify_refuses_a_broken_strategy(
    case: str, strategy_name: str, mutate: Mutation, field: str
) -> None:
    """Each valid for the model (moto and botocore take it), refused by AWS or
    breaking the project's rule (test traffic checked before production traffic)."""
    sd = copy.deepcopy(rendered("frontend", strategy_name).service_definition)
    assert strategy.problems(sd) == []
    mutate(sd)
    if case != "linear-not-offered":
        assert verify.service_definition(sd) == [], case
    found = strategy.problems(sd)
    assert found, f"{case}: accepted"
    assert any(field in p.field for p in found), [str(p) for p in found]


def _metrics(config: dict[str, Any]) -> list[dict[str, Any]]:
    metrics: list[dict[str, Any]] = config["policies"][1][
        "TargetTrackingScalingPolicyConfiguration"
    ]["CustomizedMetricSpecification"]["Metrics"]
    return metrics


def _on_metrics(change: Callable[[list[dict[str, Any]]], object]) -> Mutation:
    return lambda config: change(_metrics(config))


def _only_primary(metrics: list[dict[str, Any]]) -> None:
    del metrics[3:]
    metrics[0]["Expression"] = "FILL(requests, 0) / healthy"


BROKEN_METRIC_MATH: list[tuple[str, Mutation, str]] = [
    ("return-data-twice", _on_metrics(lambda m: m[1].update(ReturnData=True)), "ReturnData"),
    ("return-data-left-out", _on_metrics(lambda m: m[2].pop("ReturnData")), "ReturnData"),
    (
        "return-data-on-a-metric",
        _on_metrics(lambda m: (m[0].update(ReturnData=False), m[1].update(ReturnData=True))),
        "ReturnData",
    ),
    (
        "unknown-id",
        _on_metrics(lambda m: m[0].update(Expression="requests / healthy_hosts")),
        "healthy_hosts",
    ),
    ("id-starts-uppercase", _on_metrics(lambda m: m[1].update(Id="Requests")), "Id: letters"),
    ("id-twice", _on_metrics(lambda m: m[2].update(Id="requests")), "not unique"),
    ("expression-and-stat", _on_metrics(lambda m: m[1].update(Expression="healthy")), "not both"),
    ("requests-averaged", _on_metrics(lambda m: m[1]["MetricStat"].update(Stat="Average")), "Sum"),
    ("healthy-summed", _on_metrics(lambda m: m[2]["MetricStat"].update(Stat="Sum")), "Average"),
    (
        "only-the-primary-under-blue-green",
        _on_metrics(_only_primary),
        "not of the service's target groups",
    ),
    (
        "single-metric-fields-too",
        lambda config: config["policies"][1]["TargetTrackingScalingPolicyConfiguration"][
            "CustomizedMetricSpecification"
        ].update(MetricName="RequestCount"),
        "not with Metrics",
    ),
]


@pytest.mark.parametrize(
    ("case", "mutate", "message"), BROKEN_METRIC_MATH, ids=[c[0] for c in BROKEN_METRIC_MATH]
)
def test_verify_refuses_broken_metric_math(case: str, mutate: Mutation, message: str) -> None:
    """Each passes the PutScalingPolicy model; AWS refuses it, or the metric counts
    the wrong thing (half the requests, the sum of a gauge)."""
    done = rendered("frontend", "BLUE_GREEN")
    config = copy.deepcopy(done.scaling)
    assert metric_math.problems(config, done.service_definition) == []
    mutate(config)
    assert verify.scaling(config) == [], case
    found = metric_math.problems(config, done.service_definition)
    assert any(message in str(p) for p in found), [str(p) for p in found]


def test_the_deploy_waits_for_the_bake_time_and_the_hook() -> None:
    """--wait by default: the rolling 600 s, plus the bake time(s) and the hook's timeout
    (ECS waits that long for a hook that does not answer)."""
    prod = {**BLUE_GREEN_ENV, **DEPLOYMENT_SETTINGS["prod"]}
    config = ecs.render("frontend", prod, TASKDEFS).service_definition["deploymentConfiguration"]
    assert strategy.extra_seconds(config) == (10 + 10) * 60
    assert ecs.budget(None, config) == 600 + 1200
    assert ecs.budget(30, config) == 30  # --wait given
    canary = rendered("backend", "CANARY").service_definition["deploymentConfiguration"]
    assert strategy.extra_seconds(canary) == (5 + 5 + 10) * 60
    rolling = rendered("backend", "ROLLING").service_definition["deploymentConfiguration"]
    assert ecs.budget(None, rolling) == 600
    # A hook without timeoutConfiguration: ECS waits up to its default, 1440 minutes.
    del config["lifecycleHooks"][0]["timeoutConfiguration"]
    assert strategy.extra_seconds(config) == (10 + 1440) * 60


# --- the variables from the stacks


def fake_stacks(
    monkeypatch: pytest.MonkeyPatch, env: str, *, with_hook: bool
) -> dict[str, dict[str, str]]:
    """The stacks of ``env`` as DescribeStacks gives them: every output FROM_OUTPUTS maps,
    except the blue/green ones of the edge stack (an edge stack of before), and the
    optional hook stack only ``with_hook``."""
    stacks = [*cloudformation.STACKS, Stack("deploy-hook", optional=True)]
    monkeypatch.setattr(cloudformation, "STACKS", tuple(stacks))
    monkeypatch.setattr(cloudformation, "BY_KEY", {s.key: s for s in stacks})
    outputs: dict[str, dict[str, str]] = {s.key: {} for s in stacks}
    for variable, (key, output) in FROM_OUTPUTS.items():
        if variable not in BLUE_GREEN or (key == "deploy-hook" and with_hook):
            outputs[key][output] = f"<{variable}>"
    names = {s.name(env): s.key for s in stacks}

    def describe(name: str) -> dict[str, Any] | None:
        key = names.get(name)
        if key is None or (key == "deploy-hook" and not with_hook):
            return None
        return {
            "StackId": f"arn:aws:cloudformation:ap-northeast-1:123456789012:stack/{name}/1",
            "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs[key].items()],
        }

    monkeypatch.setattr(cloudformation, "describe", describe)
    monkeypatch.setattr(cloudformation.awsenv, "region", lambda: "ap-northeast-1")
    return outputs


def test_stacks_without_the_blue_green_outputs_still_give_a_rolling_deploy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_stacks(monkeypatch, "dev", with_hook=False)
    variables = cloudformation.task_variables("dev")
    assert not BLUE_GREEN & set(variables)
    assert "DEPLOYMENT_STRATEGY" not in variables  # dev rolls
    for service in SERVICES:
        done = ecs.render(service, {**variables, "IMAGE_TAG": "0a1b2c3"}, TASKDEFS)
        assert done.service_definition["deploymentConfiguration"]["strategy"] == "ROLLING"


def test_stg_and_prod_deploy_blue_green_from_their_stacks(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_stacks(monkeypatch, "prod", with_hook=True)
    variables = cloudformation.task_variables("prod")
    assert variables["DEPLOYMENT_STRATEGY"] == "BLUE_GREEN"
    assert variables["BAKE_TIME_MINUTES"] == "10"
    assert variables["DEPLOY_HOOK_FUNCTION_ARN"] == "<DEPLOY_HOOK_FUNCTION_ARN>"
    # An edge stack without the alternate target groups: the render names what is missing.
    with pytest.raises(template.MissingVariables, match="FRONTEND_ALTERNATE_TARGET_GROUP_ARN"):
        ecs.render("frontend", {**variables, "IMAGE_TAG": "0a1b2c3"}, TASKDEFS)


def test_a_missing_required_output_is_still_named(monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = fake_stacks(monkeypatch, "dev", with_hook=False)
    del outputs["edge"]["FrontendTargetGroupArn"]
    with pytest.raises(cloudformation.InfraError, match="FRONTEND_TARGET_GROUP_ARN"):
        cloudformation.task_variables("dev")


# --- going back to ROLLING after blue/green


@pytest.fixture
def elbv2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """Elastic Load Balancing calls go to a Stubber (moto does not record ECS's weights)."""
    with stubbed_client(monkeypatch, "elbv2") as stubber:
        yield stubber


def running_blue_green() -> dict[str, Any]:
    """DescribeServices' service after a blue/green deployment: its production rule."""
    sd = rendered("frontend", "BLUE_GREEN").service_definition
    return {"serviceName": "sbcntr-frontend", "loadBalancers": sd["loadBalancers"]}


def expect_weights(stubber: Stubber, primary: int, alternate: int) -> None:
    """DescribeRules (Elastic Load Balancing API Reference): the production rule's weights."""
    rule = BLUE_GREEN_ENV["FRONTEND_PRODUCTION_RULE_ARN"]
    stubber.add_response(
        "describe_rules",
        {
            "Rules": [
                {
                    "RuleArn": rule,
                    "Priority": "10",
                    "Conditions": [{"Field": "path-pattern", "Values": ["/*"]}],
                    "Actions": [
                        {
                            "Type": "forward",
                            "ForwardConfig": {
                                "TargetGroups": [
                                    {
                                        "TargetGroupArn": ENV["FRONTEND_TARGET_GROUP_ARN"],
                                        "Weight": primary,
                                    },
                                    {
                                        "TargetGroupArn": BLUE_GREEN_ENV[
                                            "FRONTEND_ALTERNATE_TARGET_GROUP_ARN"
                                        ],
                                        "Weight": alternate,
                                    },
                                ]
                            },
                        }
                    ],
                    "IsDefault": False,
                }
            ]
        },
        {"RuleArns": [rule]},
    )


def test_going_back_to_rolling_is_refused_while_traffic_is_on_the_alternate(
    elbv2: Stubber,
) -> None:
    """A rolling update would register its tasks in the primary target group, which the
    production rule gives no traffic, and drain the tasks that serve: an outage."""
    rolling = rendered("frontend", "ROLLING").service_definition
    expect_weights(elbv2, primary=0, alternate=100)
    found = strategy.back_to_rolling(running_blue_green(), rolling)
    assert [p.field for p in found] == ["deploymentConfiguration.strategy"]
    assert found[0].message.startswith(
        "ROLLING registers tasks in targetgroup/front/1 only, and the production rule sends "
        "traffic to targetgroup/front-alt/3"
    )
    expect_weights(elbv2, primary=100, alternate=0)
    assert strategy.back_to_rolling(running_blue_green(), rolling) == []


def test_the_weights_are_read_only_when_going_back_to_rolling(elbv2: Stubber) -> None:
    """No DescribeRules otherwise (the Stubber fails on any call it was not given)."""
    blue_green = rendered("frontend", "BLUE_GREEN").service_definition
    assert strategy.back_to_rolling(running_blue_green(), blue_green) == []
    rolling = rendered("frontend", "ROLLING").service_definition
    assert strategy.back_to_rolling(None, rolling) == []  # a first deploy
    never_blue_green = {"serviceName": "sbcntr-frontend", "loadBalancers": rolling["loadBalancers"]}
    assert strategy.back_to_rolling(never_blue_green, rolling) == []


def test_release_deploy_keeps_the_environments_strategy_without_the_stacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Infrastructure made elsewhere (the variables in the environment): prod still
    deploys blue/green; a variable of the environment wins."""

    def unreadable(environment: str) -> dict[str, str]:
        raise cloudformation.InfraError("sbcntr-prod-network does not exist")

    monkeypatch.setattr(rollout.cloudformation, "task_variables", unreadable)
    monkeypatch.setenv("ECS_CLUSTER", "sbcntr-prod")
    monkeypatch.delenv("DEPLOYMENT_STRATEGY", raising=False)
    assert rollout.deployment_env("prod")["DEPLOYMENT_STRATEGY"] == "BLUE_GREEN"
    assert "DEPLOYMENT_STRATEGY" not in rollout.deployment_env("dev")
    monkeypatch.setenv("DEPLOYMENT_STRATEGY", "CANARY")
    assert rollout.deployment_env("prod")["DEPLOYMENT_STRATEGY"] == "CANARY"
