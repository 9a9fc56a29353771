"""Maintenance mode: the public listener's rule answers a fixed 503 page, or forwards.

The edge stack creates the rule (``MaintenanceRule``, priority 1, every path) and
declares its state with the ``MaintenanceMode`` parameter; this module flips the
live rule through the ELBv2 API without a stack update, and reads it back. The
page is the stack's ``MaintenancePageHtml`` parameter: one copy, in the stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sbcntrctl.deploy.aws import Client
from sbcntrctl.infra import cloudformation
from sbcntrctl.infra.stacks import BY_KEY


@dataclass
class Status:
    live: str  # "on" or "off", from the rule's action
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


def status(env: str) -> Status:
    outputs, parameters = _edge(env)
    rule = _elbv2().describe_rules(RuleArns=[outputs["MaintenanceRuleArn"]])["Rules"][0]
    live = "on" if any(a["Type"] == "fixed-response" for a in rule["Actions"]) else "off"
    return Status(live, parameters.get("MaintenanceMode", "off"), rule["RuleArn"])


def switch(env: str, on: bool) -> Status:
    """Turn maintenance on (every request gets the 503 page) or off (forward again)."""
    outputs, parameters = _edge(env)
    if on:
        action: dict[str, Any] = {
            "Type": "fixed-response",
            "FixedResponseConfig": {
                "StatusCode": "503",
                "ContentType": "text/html",
                "MessageBody": parameters["MaintenancePageHtml"],
            },
        }
    else:
        action = {"Type": "forward", "TargetGroupArn": outputs["FrontendTargetGroupArn"]}
    _elbv2().modify_rule(RuleArn=outputs["MaintenanceRuleArn"], Actions=[action])
    return status(env)
