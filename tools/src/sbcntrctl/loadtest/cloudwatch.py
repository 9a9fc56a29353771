"""STEP4 read from CloudWatch: the figures of a load test's window on a deployed environment.

For ``--cloudwatch ENV --start T1 --end T2`` (the window of a STEP3 run against
the environment's public load balancer), :func:`read` collects:

- requests and 5xx answers at the public load balancer (``AWS/ApplicationELB``,
  per minute), and requests per target;
- the frontend's latency percentiles from its own metrics (EMF, namespace
  ``sbcntr/<env>``, over the whole window);
- each service's CPU and memory (``AWS/ECS``, average and maximum per minute)
  and running tasks (``ECS/ContainerInsights``);
- the Application Auto Scaling activities of both services in the window, and
  the error lines (``level`` error/critical) logged while each was under way.

:func:`as_step` turns the window into the same :class:`capacity.Step` a local
step run gives, so :func:`capacity.recommend` (one code path) makes the STEP5
recommendation; CPU seconds are the per-minute average CPU x the task's vCPU
x the running tasks x 60 s.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from sbcntrctl.loadtest import capacity

SERVICES = ("frontend", "backend")
IDLE_CPU_PERCENT = 20.0  # below this at its peak minute, the task is larger than it needs
TIGHT_PERCENT = 85.0  # above this at its peak minute, no headroom is left for a spike
_DESIRED = re.compile(r"desired count to (\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Activity:
    service: str
    start: dt.datetime
    end: dt.datetime
    description: str
    status: str
    desired: int | None

    @classmethod
    def parse(cls, service: str, raw: dict[str, Any]) -> Activity:
        found = _DESIRED.search(raw.get("Description", ""))
        return cls(
            service,
            raw["StartTime"],
            raw.get("EndTime") or raw["StartTime"],
            raw.get("Description", ""),
            raw.get("StatusCode", ""),
            int(found.group(1)) if found else None,
        )


@dataclass
class Window:
    """What CloudWatch holds about one load test's window."""

    env: str
    start: dt.datetime
    end: dt.datetime
    requests_per_minute: list[float]
    failures: int
    requests_per_target: float
    latency_ms: dict[str, float]
    cpu: dict[str, list[tuple[float, float]]]  # per minute: (average, maximum) percent
    memory: dict[str, list[tuple[float, float]]]
    running: dict[str, list[float]]
    task_vcpu: dict[str, float]
    activities: list[Activity] = field(default_factory=list)
    errors_while_scaling: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def requests(self) -> int:
        return int(sum(self.requests_per_minute))

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def edge_names(cfn: Any, env: str) -> tuple[str | None, str | None]:
    """The public ALB's and the frontend target group's full names: the edge stack's
    ``*FullName`` exports (None when the environment has no edge stack)."""
    exports = {
        e["Name"]: e["Value"]
        for page in cfn.get_paginator("list_exports").paginate()
        for e in page["Exports"]
    }
    return (
        exports.get(f"sbcntr-{env}-PublicAlbFullName"),
        exports.get(f"sbcntr-{env}-FrontendTargetGroupFullName"),
    )


def _query(
    qid: str, namespace: str, name: str, dims: dict[str, str], stat: str, period: int
) -> dict[str, Any]:
    return {
        "Id": qid,
        "MetricStat": {
            "Metric": {
                "Namespace": namespace,
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
            },
            "Period": period,
            "Stat": stat,
        },
        "ReturnData": True,
    }


def read(
    clients: dict[str, Any],
    env: str,
    start: dt.datetime,
    end: dt.datetime,
    load_balancer: str,
    target_group: str,
) -> Window:
    """Read the window; ``clients``: boto3 clients for cloudwatch, ecs,
    application-autoscaling and logs."""
    cluster = f"sbcntr-{env}"
    whole = max(60, int((end - start).total_seconds()) // 60 * 60)
    queries = [
        _query(
            "requests",
            "AWS/ApplicationELB",
            "RequestCount",
            {"LoadBalancer": load_balancer},
            "Sum",
            60,
        ),
        _query(
            "elb5xx",
            "AWS/ApplicationELB",
            "HTTPCode_ELB_5XX_Count",
            {"LoadBalancer": load_balancer},
            "Sum",
            whole,
        ),
        _query(
            "target5xx",
            "AWS/ApplicationELB",
            "HTTPCode_Target_5XX_Count",
            {"LoadBalancer": load_balancer},
            "Sum",
            whole,
        ),
        _query(
            "pertarget",
            "AWS/ApplicationELB",
            "RequestCountPerTarget",
            {"LoadBalancer": load_balancer, "TargetGroup": target_group},
            "Sum",
            whole,
        ),
    ]
    for q in ("p50", "p95", "p99"):
        queries.append(
            _query(f"latency_{q}", f"sbcntr/{env}", "Latency", {"Service": "frontend"}, q, whole)
        )
    for service in SERVICES:
        dims = {"ClusterName": cluster, "ServiceName": f"sbcntr-{service}"}
        for metric, key in (("CPUUtilization", "cpu"), ("MemoryUtilization", "mem")):
            for stat in ("Average", "Maximum"):
                queries.append(
                    _query(f"{key}_{stat.lower()}_{service}", "AWS/ECS", metric, dims, stat, 60)
                )
        queries.append(
            _query(
                f"running_{service}",
                "ECS/ContainerInsights",
                "RunningTaskCount",
                dims,
                "Average",
                60,
            )
        )
    series = _metric_data(clients["cloudwatch"], queries, start, end)

    def total(qid: str) -> float:
        return sum(series.get(qid, []))

    def average_and_maximum(key: str) -> dict[str, list[tuple[float, float]]]:
        """Per service, per minute: (average, maximum) of the ``key`` queries above."""
        return {
            s: list(
                zip(
                    series.get(f"{key}_average_{s}", []),
                    series.get(f"{key}_maximum_{s}", []),
                    strict=False,
                )
            )
            for s in SERVICES
        }

    window = Window(
        env=env,
        start=start,
        end=end,
        requests_per_minute=series.get("requests", []),
        failures=int(total("elb5xx") + total("target5xx")),
        requests_per_target=total("pertarget"),
        latency_ms={
            q: (series.get(f"latency_{q}") or [float("nan")])[0] for q in ("p50", "p95", "p99")
        },
        cpu=average_and_maximum("cpu"),
        memory=average_and_maximum("mem"),
        running={s: series.get(f"running_{s}", []) for s in SERVICES},
        task_vcpu={s: _task_vcpu(clients["ecs"], cluster, s) for s in SERVICES},
    )
    window.activities = _activities(clients["application-autoscaling"], cluster, start, end)
    window.errors_while_scaling = _errors_while(clients["logs"], env, window.activities)
    return window


def _metric_data(
    client: Any, queries: list[dict[str, Any]], start: dt.datetime, end: dt.datetime
) -> dict[str, list[float]]:
    series: dict[str, list[float]] = {}
    kwargs: dict[str, Any] = {
        "MetricDataQueries": queries,
        "StartTime": start,
        "EndTime": end,
        "ScanBy": "TimestampAscending",
    }
    while True:
        answer = client.get_metric_data(**kwargs)
        for result in answer["MetricDataResults"]:
            series.setdefault(result["Id"], []).extend(float(v) for v in result.get("Values", []))
        if not answer.get("NextToken"):
            return series
        kwargs["NextToken"] = answer["NextToken"]


def _task_vcpu(ecs: Any, cluster: str, service: str) -> float:
    described = ecs.describe_services(cluster=cluster, services=[f"sbcntr-{service}"])["services"]
    if not described:
        msg = f"no service sbcntr-{service} in cluster {cluster}"
        raise ValueError(msg)
    td = ecs.describe_task_definition(taskDefinition=described[0]["taskDefinition"])
    return int(td["taskDefinition"]["cpu"]) / 1024


def _activities(client: Any, cluster: str, start: dt.datetime, end: dt.datetime) -> list[Activity]:
    found = []
    for service in SERVICES:
        kwargs = {"ServiceNamespace": "ecs", "ResourceId": f"service/{cluster}/sbcntr-{service}"}
        while True:
            answer = client.describe_scaling_activities(**kwargs)
            for raw in answer.get("ScalingActivities", []):
                activity = Activity.parse(service, raw)
                if activity.end >= start and activity.start <= end:
                    found.append(activity)
            if not answer.get("NextToken"):
                break
            kwargs["NextToken"] = answer["NextToken"]
    return sorted(found, key=lambda a: a.start)


def _errors_while(logs: Any, env: str, activities: list[Activity]) -> list[str]:
    """error/critical lines logged from each activity's start to a minute after its end."""
    errors = []
    for activity in activities:
        begin = int(activity.start.timestamp() * 1000)
        until = int((activity.end + dt.timedelta(seconds=60)).timestamp() * 1000)
        for service in SERVICES:
            kwargs: dict[str, Any] = {
                "logGroupName": f"/sbcntr/{env}/{service}",
                "startTime": begin,
                "endTime": until,
            }
            while True:
                answer = logs.filter_log_events(**kwargs)
                for event in answer.get("events", []):
                    try:
                        line = json.loads(event["message"])
                    except ValueError:
                        line = {"level": "error", "event": event["message"]}
                    if isinstance(line, dict) and line.get("level") in ("error", "critical"):
                        errors.append(
                            f"{service}: {line.get('event', '')} ({activity.description})"
                        )
                if not answer.get("nextToken"):
                    break
                kwargs["nextToken"] = answer["nextToken"]
    return errors


def as_step(window: Window) -> capacity.Step:
    """The window as a step: its requests, errors, percentiles and each service's CPU seconds."""
    cpu_seconds = {}
    for service in SERVICES:
        per_minute = zip((a for a, _ in window.cpu[service]), window.running[service], strict=False)
        cpu_seconds[service] = sum(
            avg / 100 * window.task_vcpu[service] * tasks * 60 for avg, tasks in per_minute
        )
    return capacity.Step(
        phase=0,
        name="window",
        target_rps=window.rps,
        users=0,
        measured_from=window.start.timestamp(),
        measured_to=window.end.timestamp(),
        requests=window.requests,
        failures=window.failures,
        rps=window.rps,
        p50_ms=window.latency_ms["p50"],
        p95_ms=window.latency_ms["p95"],
        p99_ms=window.latency_ms["p99"],
        max_ms=window.latency_ms["p99"],
        cpu_seconds=cpu_seconds,
    )


@dataclass(frozen=True)
class Check:
    what: str
    met: bool | None  # None: nothing to judge from
    figure: str


def checklist(window: Window, rps: float, max_p95_ms: float, max_error_ratio: float) -> list[Check]:
    """The book's STEP4 questions, each answered with the window's figure."""
    step = as_step(window)
    peak = max(window.requests_per_minute, default=0.0) / 60
    checks = [
        Check(
            "the required request rate is met",
            step.rps >= rps or peak >= rps,
            f"{step.rps:.1f} req/s average, {peak:.1f} at the busiest minute (required {rps:g})",
        ),
        Check(
            "p95 latency within the threshold",
            step.p95_ms <= max_p95_ms,
            f"p50 {step.p50_ms:.0f} / p95 {step.p95_ms:.0f} / p99 {step.p99_ms:.0f} ms (EMF)",
        ),
        Check(
            "errors within the threshold",
            step.error_ratio <= max_error_ratio,
            f"{step.failures} 5xx of {step.requests} ({step.error_ratio:.2%})",
        ),
    ]
    for service in SERVICES:
        for name, samples in (("CPU", window.cpu[service]), ("memory", window.memory[service])):
            if not samples:
                checks.append(Check(f"{service} {name} neither idle nor tight", None, "no data"))
                continue
            average = sum(a for a, _ in samples) / len(samples)
            top = max(m for _, m in samples)
            ok = top <= TIGHT_PERCENT and (name == "memory" or top >= IDLE_CPU_PERCENT)
            checks.append(
                Check(
                    f"{service} {name} neither idle nor tight",
                    ok,
                    f"average {average:.0f}%, maximum {top:.0f}%",
                )
            )
    for service in SERVICES:
        tasks = window.running[service]
        desired = [
            a.desired for a in window.activities if a.service == service and a.desired is not None
        ]
        out = any(b > a for a, b in itertools.pairwise(desired)) or bool(
            tasks and max(tasks) > tasks[0]
        )
        back = any(b < a for a, b in itertools.pairwise(desired)) or bool(
            tasks and tasks[-1] < max(tasks)
        )
        span = f"running {min(tasks):.0f}-{max(tasks):.0f} tasks" if tasks else "no task data"
        checks.append(
            Check(f"{service} scaled out", out, f"{span}, {len(desired)} scaling activities")
        )
        checks.append(Check(f"{service} scaled in", back, span))
    checks.append(
        Check(
            "no error logged while scaling",
            not window.errors_while_scaling,
            f"{len(window.errors_while_scaling)} error line(s) during "
            f"{len(window.activities)} activities",
        )
    )
    return checks
