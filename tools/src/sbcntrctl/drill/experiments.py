"""The drills of infra/drills.yml: find one's experiment template, check the
services can take it, start it, follow it to its end.

An experiment template is found by its ``Name`` tag, ``sbcntr-<env>-<drill>``.
The task actions (CPU stress, network latency) run through the SSM agent
sidecar of each task (FIS user guide, "Use the aws:ecs:task actions"): without
it, or with ECS Exec on the service, or (network faults on Fargate) without
``enableFaultInjection`` on the task definition, the experiment cannot reach
the tasks, so the drill is refused before it starts, naming what is missing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Drill -> (the service it targets, or None for the whole environment; its FIS action).
DRILLS: dict[str, tuple[str | None, str]] = {
    "stop-frontend-tasks": ("frontend", "aws:ecs:stop-task"),
    "stop-backend-tasks": ("backend", "aws:ecs:stop-task"),
    "cpu-stress-frontend": ("frontend", "aws:ecs:task-cpu-stress"),
    "cpu-stress-backend": ("backend", "aws:ecs:task-cpu-stress"),
    "network-latency-frontend": ("frontend", "aws:ecs:task-network-latency"),
    "network-latency-backend": ("backend", "aws:ecs:task-network-latency"),
    "az-outage": (None, "aws:network:disrupt-connectivity"),
}
SIDECAR = "amazon-ssm-agent"
SIDECAR_ROLE_VARIABLE = "MANAGED_INSTANCE_ROLE_NAME"
TERMINAL = ("completed", "stopped", "failed", "cancelled")


class DrillError(Exception):
    """The drill cannot start or be followed; the message is one line saying why."""


def template_id(fis: Any, env: str, drill: str) -> str:
    """The id of the experiment template tagged ``Name: sbcntr-<env>-<drill>``."""
    wanted = f"sbcntr-{env}-{drill}"
    kwargs: dict[str, Any] = {}
    while True:
        answer = fis.list_experiment_templates(**kwargs)
        for summary in answer.get("experimentTemplates", []):
            if summary.get("tags", {}).get("Name") == wanted:
                return str(summary["id"])
        if not answer.get("nextToken"):
            break
        kwargs["nextToken"] = answer["nextToken"]
    msg = (
        f"no experiment template {wanted}: deploy the drills stack "
        f"(sbcntrctl infra deploy {env} --only drills, docs/operations.md)"
    )
    raise DrillError(msg)


def preflight(ecs: Any, env: str, drill: str) -> list[str]:
    """What keeps the drill's action from reaching the service's tasks (empty: nothing)."""
    service, action = DRILLS[drill]
    if service is None or not action.startswith("aws:ecs:task-"):
        return []
    cluster = f"sbcntr-{env}"
    described = ecs.describe_services(cluster=cluster, services=[f"sbcntr-{service}"])["services"]
    if not described or described[0].get("status") != "ACTIVE":
        return [f"no active service sbcntr-{service} in {cluster}"]
    problems = []
    if described[0].get("enableExecuteCommand"):
        problems.append(f"sbcntr-{service} has ECS Exec on (the FIS task actions refuse it)")
    definition = ecs.describe_task_definition(taskDefinition=described[0]["taskDefinition"])[
        "taskDefinition"
    ]
    sidecar = next((c for c in definition["containerDefinitions"] if c["name"] == SIDECAR), None)
    if sidecar is None:
        problems.append(f"{definition['family']} has no {SIDECAR} sidecar container")
    elif SIDECAR_ROLE_VARIABLE not in {e["name"] for e in sidecar.get("environment", [])}:
        problems.append(f"the {SIDECAR} sidecar does not set {SIDECAR_ROLE_VARIABLE}")
    if action == "aws:ecs:task-network-latency" and not definition.get("enableFaultInjection"):
        problems.append(f"{definition['family']} does not set enableFaultInjection (Fargate)")
    return problems


def start(fis: Any, template: str, drill: str) -> str:
    answer = fis.start_experiment(
        clientToken=str(uuid.uuid4()),
        experimentTemplateId=template,
        tags={"StartedBy": "sbcntrctl-drill", "Drill": drill},
    )
    return str(answer["experiment"]["id"])


@dataclass
class Outcome:
    """How the experiment ended; ``stopped_by_us`` tells an operator's stop from an alarm's."""

    experiment: dict[str, Any]
    stopped_by_us: bool

    @property
    def status(self) -> str:
        return str(self.experiment["state"]["status"])

    @property
    def stopped_by_alarm(self) -> bool:
        return self.status == "stopped" and not self.stopped_by_us


def follow(
    fis: Any,
    experiment_id: str,
    poll: float,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Poll the experiment to its end, saying each change of it and of its actions;
    Ctrl-C stops it (StopExperiment) and follows it to ``stopped``."""
    seen: dict[str, str] = {}
    stopped_by_us = False
    while True:
        try:
            experiment = fis.get_experiment(id=experiment_id)["experiment"]
            changes = {"experiment": experiment["state"]} | {
                name: action.get("state", {}) for name, action in experiment["actions"].items()
            }
            for what, state in changes.items():
                status = str(state.get("status", ""))
                if status and seen.get(what) != status:
                    seen[what] = status
                    say(f"{what}: {status} ({state.get('reason', '')})")
            if experiment["state"]["status"] in TERMINAL:
                return Outcome(experiment, stopped_by_us)
            sleep(poll)
        except KeyboardInterrupt:
            say("stopping the experiment (Ctrl-C)")
            fis.stop_experiment(id=experiment_id)
            stopped_by_us = True
