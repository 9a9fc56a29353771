"""What the services did during a drill, read from CloudWatch as ``capacity
--cloudwatch`` reads a load run (:func:`sbcntrctl.loadtest.cloudwatch.read`,
one code path): requests and 5xx at the public load balancer, the frontend's
latency percentiles (EMF), each service's running tasks and Application Auto
Scaling activities, the error lines logged while scaling; plus the tasks ECS
started in the window (its service events), which is how stopped or failed
tasks were replaced.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sbcntrctl.loadtest import cloudwatch

_STARTED = re.compile(r"has started (\d+) tasks?", re.IGNORECASE)


def tasks_started(ecs: Any, env: str, start: dt.datetime, end: dt.datetime) -> dict[str, int]:
    """Per service, the tasks ECS started between ``start`` and ``end`` (service events:
    "(service sbcntr-backend) has started 1 tasks: (task ...)")."""
    cluster = f"sbcntr-{env}"
    names = [f"sbcntr-{s}" for s in cloudwatch.SERVICES]
    described = ecs.describe_services(cluster=cluster, services=names)["services"]
    started = dict.fromkeys(cloudwatch.SERVICES, 0)
    for service in described:
        key = service["serviceName"].removeprefix("sbcntr-")
        for event in service.get("events", []):
            found = _STARTED.search(event.get("message", ""))
            if found and start <= event["createdAt"] <= end:
                started[key] += int(found.group(1))
    return started


def lines(window: cloudwatch.Window, started: dict[str, int]) -> list[str]:
    """The report: one line per figure."""
    step = cloudwatch.as_step(window)
    out = [
        f"window: {window.start.isoformat()} to {window.end.isoformat()}",
        f"requests: {window.requests} at the public load balancer, "
        f"{window.failures} 5xx ({step.error_ratio:.2%})",
        f"latency (frontend, EMF): p50 {step.p50_ms:.0f} / p95 {step.p95_ms:.0f} / "
        f"p99 {step.p99_ms:.0f} ms",
    ]
    for service in cloudwatch.SERVICES:
        running = window.running[service]
        span = (
            f"running {min(running):.0f}-{max(running):.0f} tasks "
            f"(first minute {running[0]:.0f}, last {running[-1]:.0f})"
            if running
            else "no running-task data"
        )
        activities = [a for a in window.activities if a.service == service]
        desired = [a.desired for a in activities if a.desired is not None]
        scaling = (
            f"{len(activities)} scaling activities (desired {' -> '.join(map(str, desired))})"
            if desired
            else f"{len(activities)} scaling activities"
        )
        out.append(f"{service}: {span}; {started.get(service, 0)} tasks started by ECS; {scaling}")
    out.append(
        f"error lines logged while scaling: {len(window.errors_while_scaling)}"
        + "".join(f"\n  {line}" for line in window.errors_while_scaling[:20])
    )
    return out
