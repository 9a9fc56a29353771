"""The fault-injection variant of a task definition, for the FIS task drills.

With ``FAULT_INJECTION=true`` in the deploy environment, :func:`apply` adds what
the FIS ``aws:ecs:task-*`` actions need (FIS user guide, "Use the aws:ecs:task
actions"; ECS developer guide, "Use fault injection with your Amazon ECS and
Fargate workloads"): the SSM agent sidecar of ``taskdefs/fis-ssm-agent.json``
(AWS's registration script; it registers the task as a managed instance with
the drills stack's ``sbcntr-<env>-fis-managed-instance`` role) and
``enableFaultInjection: true`` (network faults on Fargate go through the ECS
fault injection endpoints). Unset, empty or ``false``: the task definition is
unchanged; any other value is refused.

:func:`problems` checks the sidecar wherever it appears: not essential (a drill
must never stop the service), the role variable set, fault injection enabled;
and ECS Exec off on the service (the FIS task actions refuse tasks with it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sbcntrctl.deploy import template
from sbcntrctl.deploy.verify import Problem

SIDECAR = "amazon-ssm-agent"
ROLE_VARIABLE = "MANAGED_INSTANCE_ROLE_NAME"
VALUES = ("true", "false")


def enabled(env: Mapping[str, str]) -> bool:
    """``env``'s ``FAULT_INJECTION``: false when unset or empty; TemplateError otherwise
    for anything but true/false."""
    value = env.get("FAULT_INJECTION") or "false"
    if value not in VALUES:
        msg = f"FAULT_INJECTION={value!r}: true or false (unset or empty: false)"
        raise template.TemplateError(msg)
    return value == "true"


def apply(td: dict[str, Any], env: Mapping[str, str], directory: Path) -> dict[str, Any]:
    """The task definition for ``env``'s ``FAULT_INJECTION`` (see :func:`enabled`)."""
    if not enabled(env):
        return td
    sidecar = template.render_json(directory / "fis-ssm-agent.json", env)
    containers = [c for c in td["containerDefinitions"] if c["name"] != SIDECAR]
    return {**td, "enableFaultInjection": True, "containerDefinitions": [*containers, sidecar]}


def problems(td: Mapping[str, Any], service_definition: Mapping[str, Any]) -> list[Problem]:
    """The sidecar rules; empty when there is no sidecar."""
    sidecar = next((c for c in td.get("containerDefinitions", []) if c["name"] == SIDECAR), None)
    if sidecar is None:
        return []
    where = f"containerDefinitions[{SIDECAR}]"
    found = []
    if sidecar.get("essential", True):
        found.append(Problem(f"{where}.essential", "must be false: a drill must not stop the task"))
    if ROLE_VARIABLE not in {e["name"] for e in sidecar.get("environment", [])}:
        found.append(Problem(f"{where}.environment", f"{ROLE_VARIABLE} must name the role"))
    if td.get("enableFaultInjection") is not True:
        found.append(Problem("enableFaultInjection", "must be true with the FIS sidecar"))
    if service_definition.get("enableExecuteCommand"):
        found.append(
            Problem("enableExecuteCommand", "must be off: FIS task actions refuse ECS Exec tasks")
        )
    return found
