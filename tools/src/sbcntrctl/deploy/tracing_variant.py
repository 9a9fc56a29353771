"""The OpenTelemetry variant of a task definition, and the rules it must follow.

With ``TRACING_BACKEND=otel`` in the deploy environment, :func:`apply` turns a
rendered task definition (written for the X-Ray SDK and its daemon) into the
OpenTelemetry one: the ``xray-daemon`` container is replaced by the ADOT
collector of ``taskdefs/otel-collector.json``, the containers that waited for
the daemon wait for a healthy collector instead, and they get
``TRACING_BACKEND=otel`` (they export OTLP to the collector on loopback, the
services' default endpoint). Without it (unset or empty) the task definition is
unchanged; any other value is refused (a typo must not deploy the X-Ray path).

:func:`problems` checks the collector container wherever it appears: not
essential (tracing must not stop the task), OTLP ports 4317 and 4318 over TCP,
a health check, services on ``otel`` depending on it being healthy, and the
task role's policy allowing what the ``awsxray`` exporter calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sbcntrctl.deploy import template
from sbcntrctl.deploy.verify import Problem

DAEMON = "xray-daemon"
COLLECTOR = "otel-collector"
OTLP_PORTS = {4317, 4318}
XRAY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
BACKENDS = ("xray-sdk", "otel")


def backend(env: Mapping[str, str]) -> str:
    """``env``'s ``TRACING_BACKEND``: ``xray-sdk`` when unset or empty (an unset GitHub
    variable arrives empty); TemplateError naming the variable for anything else."""
    value = env.get("TRACING_BACKEND") or "xray-sdk"
    if value not in BACKENDS:
        msg = f"TRACING_BACKEND={value!r}: one of {', '.join(BACKENDS)} (unset or empty: xray-sdk)"
        raise template.TemplateError(msg)
    return value


def apply(
    td: dict[str, Any], service: str, env: Mapping[str, str], directory: Path
) -> dict[str, Any]:
    """The task definition for ``env``'s ``TRACING_BACKEND`` (see :func:`backend`)."""
    if backend(env) != "otel":
        return td
    collector = template.render_json(directory / f"{COLLECTOR}.json", env)
    collector["logConfiguration"]["options"]["awslogs-stream-prefix"] = service
    containers = []
    for container in td["containerDefinitions"]:
        if container["name"] == DAEMON:
            containers.append(collector)
            continue
        waits_for_daemon = any(d["containerName"] == DAEMON for d in container.get("dependsOn", []))
        if waits_for_daemon:
            container = {
                **container,
                "dependsOn": [
                    {"containerName": COLLECTOR, "condition": "HEALTHY"}
                    if d["containerName"] == DAEMON
                    else d
                    for d in container["dependsOn"]
                ],
                "environment": [
                    *(
                        e
                        for e in container.get("environment", [])
                        if e["name"] not in ("TRACING_BACKEND", "AWS_XRAY_DAEMON_ADDRESS")
                    ),
                    {"name": "TRACING_BACKEND", "value": "otel"},
                ],
            }
        containers.append(container)
    return {**td, "containerDefinitions": containers}


def problems(td: dict[str, Any], task_role_policy: dict[str, Any] | None) -> list[Problem]:
    """The collector rules; empty when there is no collector and no service on ``otel``."""
    containers = {c.get("name"): c for c in td.get("containerDefinitions", [])}
    on_otel = [
        name
        for name, c in containers.items()
        if {"name": "TRACING_BACKEND", "value": "otel"} in c.get("environment", [])
    ]
    collector = containers.get(COLLECTOR)
    if collector is None:
        return [
            Problem(
                f"containerDefinitions[{name}]",
                f"TRACING_BACKEND=otel needs the {COLLECTOR} container",
            )
            for name in on_otel
        ]
    where = f"containerDefinitions[{COLLECTOR}]"
    found = []
    if collector.get("essential", True):
        found.append(Problem(f"{where}.essential", "must be false: tracing must not stop the task"))
    ports = {
        (m.get("containerPort"), m.get("protocol", "tcp"))
        for m in collector.get("portMappings", [])
    }
    for port in sorted(OTLP_PORTS):
        if (port, "tcp") not in ports:
            found.append(Problem(f"{where}.portMappings", f"OTLP port {port}/tcp is missing"))
    if not collector.get("healthCheck", {}).get("command"):
        found.append(Problem(f"{where}.healthCheck", "needed so services can wait for HEALTHY"))
    for name in on_otel:
        conditions = {
            d["containerName"]: d["condition"] for d in containers[name].get("dependsOn", [])
        }
        if conditions.get(COLLECTOR) != "HEALTHY":
            found.append(
                Problem(
                    f"containerDefinitions[{name}].dependsOn",
                    f"must wait for {COLLECTOR} to be HEALTHY",
                )
            )
    if task_role_policy is not None:
        missing = XRAY_ACTIONS - _allowed_actions(task_role_policy)
        if missing:
            found.append(
                Problem("taskRoleArn", f"the task role policy lacks {', '.join(sorted(missing))}")
            )
    return found


def _allowed_actions(policy: dict[str, Any]) -> set[str]:
    allowed: set[str] = set()
    for statement in policy.get("Statement", []):
        if statement.get("Effect") == "Allow":
            actions = statement.get("Action", [])
            allowed |= {actions} if isinstance(actions, str) else set(actions)
    return allowed


def task_role_policy(
    service: str, env: Mapping[str, str], directory: Path
) -> dict[str, Any] | None:
    """The service's task role policy from ``iam/``, rendered; None when there is none."""
    path = directory / "iam" / f"task-role-policy-{service}.json"
    if not path.exists():
        return None
    policy: dict[str, Any] = template.render_json(path, env)
    return policy
