"""The capacity report: from a ``step`` run to a task size, task counts and a target.

STEP2 (size the task), STEP4 (read the metrics) and STEP5 (adjust): the
highest step each service sustained within the thresholds, its CPU at that
rate, and for a stated requirement (requests/s, peak factor) and a target
tracking CPU target, the arithmetic to the recommendation.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from sbcntrctl.loadtest import steps

# One Python process uses at most one core: Fargate sizes up to 1 vCPU.
TASK_SIZES = [(256, 512), (512, 1024), (1024, 2048)]
MIN_TASKS_FOR_AVAILABILITY = 2  # one per Availability Zone


@dataclass(frozen=True)
class Step(steps.StepRow):
    """A phase of ``steps.csv`` with the CPU each service used in its measured part."""

    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def cpu_per_request(self, service: str) -> float:
        return self.cpu_seconds[service] / self.requests if self.requests else 0.0

    def utilization(self, service: str) -> float:
        return self.cpu_seconds[service] / self.seconds if self.seconds else 0.0


HOW = (
    "each step's rate, errors and percentiles come from the requests started in its last "
    f"{1 - steps.WARMUP_FRACTION:.0%} (steps.csv, recorded by the run from Locust's request "
    "events); CPU from cpu.csv over the same seconds"
)


def read_steps(steps_csv: Path, cpu_csv: Path) -> list[Step]:
    """The phases of ``steps.csv`` (written by the run), with CPU from ``cpu.csv``;
    raises ValueError when ``cpu.csv`` does not cover every step (another run's)."""
    cpu: dict[str, list[tuple[float, float]]] = {}
    try:
        with cpu_csv.open() as handle:
            for sample in csv.DictReader(handle):
                cpu.setdefault(sample["name"], []).append(
                    (float(sample["timestamp"]), float(sample["cpu_seconds"]))
                )
    except (KeyError, ValueError, TypeError):
        msg = f"{cpu_csv}: not a cpu.csv written with --sample-pids"
        raise ValueError(msg) from None
    found = []
    for row in steps.read_csv(steps_csv):
        if not row.requests:
            continue
        for name, samples in cpu.items():
            if not samples[0][0] <= row.measured_from or not row.measured_to <= samples[-1][0]:
                msg = (
                    f"{cpu_csv}: the {name} samples do not cover {row.name} of {steps_csv} "
                    "(are they of the same run?)"
                )
                raise ValueError(msg)
        cpu_seconds = {
            name: _cpu_at(samples, row.measured_to) - _cpu_at(samples, row.measured_from)
            for name, samples in cpu.items()
        }
        found.append(Step(**vars(row), cpu_seconds=cpu_seconds))
    return found


def _cpu_at(samples: list[tuple[float, float]], at: float) -> float:
    """CPU seconds used by ``at``, interpolated between the samples around it."""
    before = max((s for s in samples if s[0] <= at), key=lambda s: s[0])
    after = min((s for s in samples if s[0] >= at), key=lambda s: s[0])
    (t0, c0), (t1, c1) = before, after
    return c0 if t1 == t0 else c0 + (c1 - c0) * (at - t0) / (t1 - t0)


def within(step: Step, max_p95_ms: float, max_error_ratio: float) -> bool:
    return step.p95_ms <= max_p95_ms and step.error_ratio <= max_error_ratio


def sustained(steps_: list[Step], max_p95_ms: float, max_error_ratio: float) -> Step | None:
    """The highest step within the latency and error thresholds."""
    good = [s for s in steps_ if within(s, max_p95_ms, max_error_ratio)]
    return max(good, key=lambda s: s.rps) if good else None


def unsaturated(steps_: list[Step], max_p95_ms: float, max_error_ratio: float) -> bool:
    """True when even the highest step stayed within the thresholds: the knee was not
    reached, so the sustained rate is only a lower bound."""
    top = max(steps_, key=lambda s: s.target_rps, default=None)
    return top is not None and within(top, max_p95_ms, max_error_ratio)


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
    carried = capacity * MIN_TASKS_FOR_AVAILABILITY
    by_rps = math.ceil(rps / capacity)
    by_peak = math.ceil(rps * peak_factor / capacity)
    low = max(MIN_TASKS_FOR_AVAILABILITY, by_rps)
    high = max(low, by_peak)
    if carried >= rps:
        why = (
            f"the smallest whose {MIN_TASKS_FOR_AVAILABILITY} tasks carry {rps:g} req/s at "
            f"{cpu_target:g}% CPU ({MIN_TASKS_FOR_AVAILABILITY} x {capacity:.1f} = {carried:.1f})"
        )
    else:
        why = (
            f"the largest, and {MIN_TASKS_FOR_AVAILABILITY} of them carry only "
            f"{MIN_TASKS_FOR_AVAILABILITY} x {capacity:.1f} = {carried:.1f} of {rps:g} req/s "
            f"at {cpu_target:g}% CPU: more tasks, not larger ones"
        )
    lines += [
        f"  task size {chosen[0]}/{chosen[1]}: {why} (one process uses at most 1 vCPU)",
        f"  min tasks = max({MIN_TASKS_FOR_AVAILABILITY}, ceil({rps:g} / {capacity:.1f}) = "
        f"{by_rps}) = {low}",
        f"  max tasks = max({low}, ceil({rps:g} x {peak_factor:g} / {capacity:.1f}) = "
        f"{by_peak}) = {high}",
        f"  target tracking: ECSServiceAverageCPUUtilization at {cpu_target:g}%",
    ]
    return Recommendation(
        service, per_request * 1000, chosen[0], chosen[1], capacity, low, high, cpu_target, lines
    )
