"""Maintenance mode: which requests the public listener's maintenance rule answers.

The edge stack creates the rule (``MaintenanceRule``, priority 1, ahead of the
production rule ECS manages) and declares its state with the ``MaintenanceMode``
parameter. The rule always answers the fixed 503 page (the stack's
``MaintenancePageHtml``: one copy, in the stack); only its condition changes:

- on: ``path-pattern /*``, every request;
- off: the header ``X-Sbcntr-Maintenance-Preview: on``, which production traffic
  never sends and an operator may send to preview the page.

The rule never forwards, so it never names a target group: a blue/green or canary
deploy moves traffic between the two groups on the production rule and leaves this
one alone. This module flips the live rule through the ELBv2 API without a stack
update, and reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sbcntrctl.deploy.aws import Client
from sbcntrctl.infra import cloudformation
from sbcntrctl.infra.stacks import BY_KEY

PREVIEW_HEADER = "X-Sbcntr-Maintenance-Preview"
EVERY_REQUEST = [{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/*"]}}]
PREVIEW_ONLY = [
    {
        "Field": "http-header",
        "HttpHeaderConfig": {"HttpHeaderName": PREVIEW_HEADER, "Values": ["on"]},
    }
]


@dataclass
class Status:
    live: str  # "on" or "off", from the rule's condition
    declared: str  # the stack's MaintenanceMode parameter
    rule_arn: str


def _edge(env: str) -> tuple[dict[str, str], dict[str, str]]:
    name = BY_KEY["edge"].name(env)
    stack = cloudformation.describe(name)
    if stack is None:
        msg = f"{name} does not exist: run `sbcntrctl infra deploy {env}` first"
        raise cloudformation.InfraError(msg)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack["Parameters"]}
    return outputs, parameters


def _elbv2() -> Any:
    return Client("elbv2")


def _conditions(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """The rule's conditions in the request shape (DescribeRules adds ``Values``)."""
    shaped = []
    for condition in rule["Conditions"]:
        if condition["Field"] == "path-pattern":
            values = condition.get("PathPatternConfig", {}).get("Values") or condition["Values"]
            shaped.append({"Field": "path-pattern", "PathPatternConfig": {"Values": values}})
        elif condition["Field"] == "http-header":
            config = condition["HttpHeaderConfig"]
            shaped.append(
                {
                    "Field": "http-header",
                    "HttpHeaderConfig": {
                        "HttpHeaderName": config["HttpHeaderName"],
                        "Values": config["Values"],
                    },
                }
            )
        else:
            shaped.append({"Field": condition["Field"]})
    return shaped


def status(env: str) -> Status:
    """The live state; InfraError when the rule is neither state (edited by hand)."""
    outputs, parameters = _edge(env)
    rule = _elbv2().describe_rules(RuleArns=[outputs["MaintenanceRuleArn"]])["Rules"][0]
    page = [a["Type"] for a in rule["Actions"]] == ["fixed-response"]
    conditions = _conditions(rule)
    if page and conditions == EVERY_REQUEST:
        live = "on"
    elif page and conditions == PREVIEW_ONLY:
        live = "off"
    else:
        msg = (
            f"the maintenance rule {rule['RuleArn']} is neither on nor off "
            f"(conditions {conditions}, actions {[a['Type'] for a in rule['Actions']]}): "
            f"`sbcntrctl maintenance on|off {env}` sets it"
        )
        raise cloudformation.InfraError(msg)
    return Status(live, parameters.get("MaintenanceMode", "off"), rule["RuleArn"])


def switch(env: str, on: bool) -> Status:
    """Maintenance on (every request gets the 503 page) or off (only a preview request).

    The action is written too (the stack's page), so a rule changed by hand is
    brought back to the page whatever it held.
    """
    outputs, parameters = _edge(env)
    page = {
        "Type": "fixed-response",
        "FixedResponseConfig": {
            "StatusCode": "503",
            "ContentType": "text/html",
            "MessageBody": parameters["MaintenancePageHtml"],
        },
    }
    _elbv2().modify_rule(
        RuleArn=outputs["MaintenanceRuleArn"],
        Conditions=EVERY_REQUEST if on else PREVIEW_ONLY,
        Actions=[page],
    )
    return status(env)
