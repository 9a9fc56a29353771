"""Pass/fail thresholds checked at the end of a run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    max_error_ratio: float = 0.01
    max_p95_ms: float = 500.0
    max_p99_ms: float = 1000.0
    min_rps: float = 0.0


@dataclass(frozen=True)
class RunFigures:
    requests: int
    failures: int
    p95_ms: float
    p99_ms: float
    rps: float


def missed(figures: RunFigures, limits: Thresholds) -> list[str]:
    """One line per threshold the run missed; empty when it passed."""
    found = []
    if figures.requests == 0:
        return ["no request was sent"]
    ratio = figures.failures / figures.requests
    if ratio > limits.max_error_ratio:
        found.append(f"error ratio {ratio:.4f} > {limits.max_error_ratio}")
    if figures.p95_ms > limits.max_p95_ms:
        found.append(f"p95 {figures.p95_ms:.0f} ms > {limits.max_p95_ms:g} ms")
    if figures.p99_ms > limits.max_p99_ms:
        found.append(f"p99 {figures.p99_ms:.0f} ms > {limits.max_p99_ms:g} ms")
    if figures.rps < limits.min_rps:
        found.append(f"throughput {figures.rps:.2f} req/s < {limits.min_rps:g} req/s")
    return found
