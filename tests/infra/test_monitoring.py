"""infra/monitoring.yml: linted, and each alarm, the notifier and the dashboard wired right."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from cfnlint.decode import decode

from error_notifier import handler
from tests.support import ROOT

TEMPLATE = ROOT / "infra" / "monitoring.yml"
ERROR_PATTERN = '{ ($.level = "error") || ($.level = "critical") }'


def template() -> dict[str, Any]:
    parsed, problems = decode(str(TEMPLATE))
    assert not problems, problems
    return json.loads(json.dumps(parsed))


def of_type(t: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in t["Resources"].items() if r["Type"] == kind}


def alarm_problems(t: dict[str, Any]) -> list[str]:
    """Every alarm notifies the topic both ways; thresholds are documented parameters."""
    problems = []
    for name, alarm in of_type(t, "AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        for key in ("AlarmActions", "OKActions"):
            if props.get(key) != [{"Ref": "AlertsTopic"}]:
                problems.append(f"{name}: {key} must be the alerts topic")
        threshold = props["Threshold"]
        if isinstance(threshold, dict):
            parameter = t["Parameters"][threshold["Ref"]]
            if "Default" not in parameter or len(parameter.get("Description", "")) < 20:
                problems.append(f"{name}: threshold parameter needs a default and its reason")
        elif threshold != 0:
            problems.append(f"{name}: a fixed threshold other than 0")
        if props.get("TreatMissingData") != "notBreaching":
            problems.append(f"{name}: a stopped environment (scale to zero) must not alarm")
    return problems


def notifier_problems(t: dict[str, Any]) -> list[str]:
    """Error lines of both services reach the notifier; it may do only what it must."""
    problems = []
    filters = of_type(t, "AWS::Logs::SubscriptionFilter")
    groups = {f["Properties"]["LogGroupName"]["Fn::Sub"] for f in filters.values()}
    if groups != {"/sbcntr/${EnvName}/frontend", "/sbcntr/${EnvName}/backend"}:
        problems.append(f"subscription filters on {sorted(groups)}")
    for name, f in filters.items():
        if f["Properties"]["FilterPattern"] != ERROR_PATTERN:
            problems.append(f"{name}: pattern {f['Properties']['FilterPattern']}")
    role = t["Resources"]["NotifierRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    allowed = {s["Sid"]: s for s in role["Statement"]}
    if allowed["Publish"]["Resource"] != {"Ref": "AlertsTopic"}:
        problems.append("the notifier publishes to its topic only")
    if allowed["RateLimitState"]["Action"] != "dynamodb:UpdateItem":
        problems.append("the notifier only updates its state item")
    function = t["Resources"]["NotifierFunction"]["Properties"]
    module, _, entry = function["Handler"].rpartition(".")
    if module != "error_notifier.handler" or not callable(getattr(handler, entry, None)):
        problems.append(f"handler {function['Handler']} is not the notifier's entry point")
    variables = set(function["Environment"]["Variables"])
    if variables != {"TOPIC_ARN", "STATE_TABLE", "WINDOW_SECONDS", "ENV_NAME"}:
        problems.append(f"environment {sorted(variables)}")
    return problems


def deployment_alert_problems(t: dict[str, Any]) -> list[str]:
    """A deployment ECS gives up (SERVICE_DEPLOYMENT_FAILED, Amazon ECS Developer
    Guide, "Amazon ECS service deployment state change events") of either service
    reaches the alerts topic, which admits that rule alone from EventBridge
    (Amazon EventBridge User Guide, "Amazon SNS permissions": a topic policy for
    events.amazonaws.com, and the key policy for an encrypted topic)."""
    problems = []
    rule = t["Resources"].get("DeploymentFailedRule", {}).get("Properties", {})
    pattern = rule.get("EventPattern", {})
    if pattern.get("source") != ["aws.ecs"] or pattern.get("detail-type") != [
        "ECS Deployment State Change"
    ]:
        problems.append("the rule must match ECS's deployment state change events")
    if pattern.get("detail", {}).get("eventName") != ["SERVICE_DEPLOYMENT_FAILED"]:
        problems.append("the rule must match SERVICE_DEPLOYMENT_FAILED")
    services = sorted(r["Fn::Sub"][0].rsplit("/", 1)[-1] for r in pattern.get("resources", []))
    if services != ["sbcntr-backend", "sbcntr-frontend"]:
        problems.append(f"the rule must cover both services, not {services}")
    if [x.get("Arn") for x in rule.get("Targets", [])] != [{"Ref": "AlertsTopic"}]:
        problems.append("the rule must notify the alerts topic")
    policy = t["Resources"]["AlertsTopicPolicy"]["Properties"]["PolicyDocument"]
    events = [
        s for s in policy["Statement"] if s["Principal"] == {"Service": "events.amazonaws.com"}
    ]
    source = {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["DeploymentFailedRule", "Arn"]}}}
    if [s.get("Condition") for s in events] != [source]:
        problems.append("the topic must admit EventBridge for the rule alone (aws:SourceArn)")
    if any(s["Principal"] in ("*", {"AWS": "*"}) for s in policy["Statement"]):
        problems.append("the topic policy must not admit everyone")
    key = t["Resources"]["AlertsKey"]["Properties"]["KeyPolicy"]["Statement"]
    if not any(s["Principal"] == {"Service": "events.amazonaws.com"} for s in key):
        problems.append("EventBridge must be able to use the topic's key")
    return problems


def dashboard(t: dict[str, Any]) -> dict[str, Any]:
    body, names = t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    values = {"EnvName": "dev", "AWS::Region": "ap-northeast-1", **{k: "x" for k in names}}

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        return values.get(key, f"arn:aws:cloudwatch:r:1:alarm:{key}")

    return dict(json.loads(re.sub(r"\$\{([^}]+)\}", fill, body)))


@pytest.mark.parametrize("rule", [alarm_problems, notifier_problems, deployment_alert_problems])
def test_the_template_keeps_the_rule(rule: Any) -> None:
    assert rule(template()) == []


def test_the_alarms_cover_what_the_design_names() -> None:
    alarms = of_type(template(), "AWS::CloudWatch::Alarm")
    assert set(alarms) == {
        "Public5xxRate",
        "FrontendP99Latency",
        *(
            f"{s}{a}"
            for s in ("Frontend", "Backend")
            for a in (
                "UnhealthyTargets",
                "CpuHigh",
                "MemoryHigh",
                "TasksBelowDesired",
                "ErrorLinesHigh",
            )
        ),
    }
    p99 = alarms["FrontendP99Latency"]["Properties"]
    assert (p99["MetricName"], p99["ExtendedStatistic"]) == ("Latency", "p99")
    assert p99["Namespace"] == {"Fn::Sub": "sbcntr/${EnvName}"}


def test_the_dashboard_is_valid_json_and_shows_every_alarm() -> None:
    t = template()
    body = dashboard(t)
    titles = [w["properties"].get("title") for w in body["widgets"]]
    for wanted in (
        "Requests/s per route",
        "p50 and p99 per route (ms)",
        "5xx",
        "Backend calls: errors per operation",
        "CPU per service (%)",
        "Memory per service (%)",
        "Tasks: running vs desired (scaling)",
        "Alarms",
    ):
        assert wanted in titles
    alarms = next(w for w in body["widgets"] if w["type"] == "alarm")["properties"]["alarms"]
    assert len(alarms) == len(of_type(t, "AWS::CloudWatch::Alarm"))


def test_the_error_pattern_selects_what_the_log_schema_calls_errors() -> None:
    # The filter syntax (CloudWatch Logs User Guide, "Filter pattern syntax for
    # JSON log events") compares $.level; the schema's levels are lower case.
    schema = (ROOT / "docs" / "log-schema.md").read_text(encoding="utf-8")
    assert "`debug`, `info`, `warning`, `error`, `critical` (lower case)" in schema
    assert re.findall(r'\$\.level = "(\w+)"', ERROR_PATTERN) == ["error", "critical"]


def test_the_rules_fail_on_broken_copies() -> None:
    broken = copy.deepcopy(template())
    broken["Resources"]["BackendCpuHigh"]["Properties"]["OKActions"] = []
    assert alarm_problems(broken)
    broken = copy.deepcopy(template())
    broken["Resources"]["FrontendP99Latency"]["Properties"]["Threshold"] = 2000
    assert alarm_problems(broken)
    broken = copy.deepcopy(template())
    del broken["Resources"]["BackendErrorsToNotifier"]
    assert notifier_problems(broken)
    broken = copy.deepcopy(template())
    broken["Resources"]["NotifierFunction"]["Properties"]["Handler"] = "error_notifier.handler.x"
    assert notifier_problems(broken)


def topic_statement(t: dict[str, Any], sid: str) -> Any:
    """The statement ``sid`` of the topic policy of ``t`` itself (to break it)."""
    policy = t["Resources"]["AlertsTopicPolicy"]["Properties"]["PolicyDocument"]
    return next(s for s in policy["Statement"] if s["Sid"] == sid)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda t: t["Resources"]["DeploymentFailedRule"]["Properties"]["EventPattern"][
                "detail"
            ].update(eventName=["SERVICE_DEPLOYMENT_COMPLETED"]),
            "SERVICE_DEPLOYMENT_FAILED",
        ),
        (
            lambda t: t["Resources"]["DeploymentFailedRule"]["Properties"]["EventPattern"][
                "resources"
            ].pop(),
            "both services",
        ),
        (
            lambda t: t["Resources"]["DeploymentFailedRule"]["Properties"].update(Targets=[]),
            "notify the alerts topic",
        ),
        (
            lambda t: topic_statement(t, "FailedDeploymentsRule").pop("Condition"),
            "for the rule alone",
        ),
        (
            lambda t: t["Resources"]["AlertsTopicPolicy"]["Properties"]["PolicyDocument"][
                "Statement"
            ].append({"Sid": "Open", "Effect": "Allow", "Principal": "*", "Action": "sns:Publish"}),
            "not admit everyone",
        ),
        (
            lambda t: t["Resources"]["AlertsKey"]["Properties"]["KeyPolicy"]["Statement"].pop(),
            "the topic's key",
        ),
    ],
)
def test_the_deployment_alert_rule_fails_on_broken_copies(mutate: Any, expected: str) -> None:
    broken = copy.deepcopy(template())
    mutate(broken)
    problems = deployment_alert_problems(broken)
    assert any(expected in p for p in problems), problems
