"""The capacity report: from a ``step`` run to a task size, task counts and a target.

STEP2 (size the task), STEP4 (read the metrics) and STEP5 (adjust): the
highest step each service sustained within the thresholds, its CPU at that
rate, and for a stated requirement (requests/s, peak factor) and a target
tracking CPU target, the arithmetic to the recommendation.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

# One Python process uses at most one core: Fargate sizes up to 1 vCPU.
TASK_SIZES = [(256, 512), (512, 1024), (1024, 2048)]
MIN_TASKS_FOR_AVAILABILITY = 2  # one per Availability Zone


@dataclass(frozen=True)
class Step:
    users: int
    seconds: float
    requests: int
    failures: int
    rps: float
    p95_ms: float
    cpu_seconds: dict[str, float]

    @property
    def error_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def cpu_per_request(self, service: str) -> float:
        return self.cpu_seconds[service] / self.requests if self.requests else 0.0

    def utilization(self, service: str) -> float:
        return self.cpu_seconds[service] / self.seconds if self.seconds else 0.0


def read_steps(history_csv: Path, cpu_csv: Path, warmup_fraction: float = 0.2) -> list[Step]:
    """Plateaus of the Aggregated rows of ``_stats_history.csv``, with CPU from ``cpu.csv``."""
    rows = []
    with history_csv.open() as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated" and row["User Count"]:
                rows.append(row)
    cpu: dict[str, list[tuple[float, float]]] = {}
    with cpu_csv.open() as handle:
        for row in csv.DictReader(handle):
            cpu.setdefault(row["name"], []).append(
                (float(row["timestamp"]), float(row["cpu_seconds"]))
            )
    plateaus: dict[int, list[dict[str, str]]] = {}
    for row in rows:
        plateaus.setdefault(int(row["User Count"]), []).append(row)
    steps = []
    for users, group in sorted(plateaus.items()):
        kept = group[int(len(group) * warmup_fraction) :]
        if len(kept) < 2:
            continue
        start, end = float(kept[0]["Timestamp"]), float(kept[-1]["Timestamp"])
        requests = int(kept[-1]["Total Request Count"]) - int(kept[0]["Total Request Count"])
        failures = int(kept[-1]["Total Failure Count"]) - int(kept[0]["Total Failure Count"])
        p95 = sorted(float(r["95%"]) for r in kept if r["95%"] not in ("N/A", ""))
        steps.append(
            Step(
                users=users,
                seconds=end - start,
                requests=requests,
                failures=failures,
                rps=requests / (end - start) if end > start else 0.0,
                p95_ms=p95[len(p95) // 2] if p95 else 0.0,
                cpu_seconds={
                    name: _cpu_between(samples, start, end) for name, samples in cpu.items()
                },
            )
        )
    return steps


def _cpu_between(samples: list[tuple[float, float]], start: float, end: float) -> float:
    inside = [value for at, value in samples if start <= at <= end]
    return inside[-1] - inside[0] if len(inside) >= 2 else 0.0


def sustained(steps: list[Step], max_p95_ms: float, max_error_ratio: float) -> Step | None:
    """The highest step within the latency and error thresholds."""
    good = [s for s in steps if s.p95_ms <= max_p95_ms and s.error_ratio <= max_error_ratio]
    return max(good, key=lambda s: s.rps) if good else None


@dataclass(frozen=True)
class Recommendation:
    service: str
    cpu_per_request_ms: float
    task_cpu: int
    task_memory: int
    rps_per_task: float
    min_tasks: int
    max_tasks: int
    cpu_target: float
    arithmetic: list[str]


def recommend(
    service: str, step: Step, rps: float, peak_factor: float, cpu_target: float
) -> Recommendation:
    per_request = step.cpu_per_request(service)
    if per_request <= 0:
        msg = f"no CPU recorded for {service}: run with --sample-pids"
        raise ValueError(msg)
    lines = [
        f"{service}: {step.cpu_seconds[service]:.2f} CPU-s for {step.requests} requests at "
        f"{step.rps:.1f} req/s = {per_request * 1000:.2f} ms of CPU per request",
    ]
    chosen = TASK_SIZES[-1]
    for cpu_units, memory in TASK_SIZES:
        capacity = cpu_units / 1024 * cpu_target / 100 / per_request
        lines.append(
            f"  {cpu_units} CPU units x {cpu_target:g}% / {per_request * 1000:.2f} ms = "
            f"{capacity:.1f} req/s per task"
        )
        if capacity * MIN_TASKS_FOR_AVAILABILITY >= rps:
            chosen = (cpu_units, memory)
            break
    capacity = chosen[0] / 1024 * cpu_target / 100 / per_request
    low = max(MIN_TASKS_FOR_AVAILABILITY, math.ceil(rps / capacity))
    high = max(low, math.ceil(rps * peak_factor / capacity))
    lines += [
        f"  task size {chosen[0]}/{chosen[1]}: the smallest whose {MIN_TASKS_FOR_AVAILABILITY} "
        f"tasks carry {rps:g} req/s at {cpu_target:g}% CPU (one process uses at most 1 vCPU)",
        f"  min tasks = max({MIN_TASKS_FOR_AVAILABILITY}, ceil({rps:g} / {capacity:.1f})) = {low}",
        f"  max tasks = ceil({rps:g} x {peak_factor:g} / {capacity:.1f}) = {high}",
        f"  target tracking: ECSServiceAverageCPUUtilization at {cpu_target:g}%",
    ]
    return Recommendation(
        service, per_request * 1000, chosen[0], chosen[1], capacity, low, high, cpu_target, lines
    )
