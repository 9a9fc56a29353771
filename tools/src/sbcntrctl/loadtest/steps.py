"""Per-phase figures of a run, from the requests themselves.

While a run goes on, every request Locust completes is added to the
histogram of the wall-clock second it *started* in (:class:`SecondBins`;
workers send theirs to the master, which merges them). At the end the
seconds are grouped by the shape's phases: the first ``WARMUP_FRACTION`` of
each phase is left out (users are still being added or removed), and each
phase's rate, errors and percentiles come from the requests started in the
rest of it. Response times are kept as Locust rounds them in its own
histogram (two significant digits from 100 ms), so a percentile here and in
Locust's report agree to that rounding.

The result is ``steps.csv`` in the report folder, which ``sbcntrctl
capacity`` reads.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sbcntrctl.loadtest.shapes import Phase

WARMUP_FRACTION = 0.2
COLUMNS = [
    "phase",
    "name",
    "target_rps",
    "users",
    "measured_from",
    "measured_to",
    "requests",
    "failures",
    "rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
]


def rounded(milliseconds: float) -> int:
    """Locust's histogram rounding: exact below 100 ms, then two significant digits."""
    value = round(milliseconds)
    if value < 100:  # Locust's own boundary
        return int(value)
    digits = int(math.log10(value)) - 1
    return int(round(value, -digits))


@dataclass
class Bin:
    requests: int = 0
    failures: int = 0
    times: Counter[int] = field(default_factory=Counter)

    def add(self, milliseconds: float, failed: bool) -> None:
        self.requests += 1
        self.failures += int(failed)
        self.times[rounded(milliseconds)] += 1

    def merge(self, other: Bin) -> None:
        self.requests += other.requests
        self.failures += other.failures
        self.times.update(other.times)

    def percentile(self, fraction: float) -> float:
        """Locust's rule: the largest time such that at most ``fraction`` of requests are faster."""
        if not self.requests:
            return 0.0
        wanted = int(self.requests * fraction)
        processed = 0
        for value in sorted(self.times, reverse=True):
            processed += self.times[value]
            if self.requests - processed <= wanted:
                return float(value)
        return float(min(self.times))


class SecondBins:
    """One :class:`Bin` per wall-clock second a request started in."""

    def __init__(self) -> None:
        self.bins: dict[int, Bin] = {}

    def add(self, started_at: float, milliseconds: float, failed: bool) -> None:
        self.bins.setdefault(int(started_at), Bin()).add(milliseconds, failed)

    def take(self) -> dict[str, Any]:
        """The bins as plain data (for a worker's report), emptied."""
        data = {
            str(second): [b.requests, b.failures, {str(k): v for k, v in b.times.items()}]
            for second, b in self.bins.items()
        }
        self.bins = {}
        return data

    def merge(self, data: dict[str, Any]) -> None:
        for second, (requests, failures, times) in data.items():
            other = Bin(requests, failures, Counter({int(k): v for k, v in times.items()}))
            self.bins.setdefault(int(second), Bin()).merge(other)


@dataclass(frozen=True)
class StepRow:
    phase: int
    name: str
    target_rps: float
    users: int
    measured_from: float
    measured_to: float
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @property
    def seconds(self) -> float:
        return self.measured_to - self.measured_from

    @property
    def error_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


def summarize(
    bins: SecondBins, phases: list[Phase], started_at: float, users: list[int]
) -> list[StepRow]:
    """Each phase's figures from the seconds in its measured part (see the module doc)."""
    rows = []
    for phase, count in zip(phases, users, strict=True):
        begin = started_at + phase.start + phase.seconds * WARMUP_FRACTION
        end = started_at + phase.end
        # whole seconds only: a second is in the phase when it lies entirely inside it
        first, last = math.ceil(begin), math.floor(end)
        total = Bin()
        for second in range(first, last):
            if second in bins.bins:
                total.merge(bins.bins[second])
        seconds = max(last - first, 0)
        rows.append(
            StepRow(
                phase=phase.index,
                name=phase.name,
                target_rps=phase.rps,
                users=count,
                measured_from=float(first),
                measured_to=float(first + seconds),
                requests=total.requests,
                failures=total.failures,
                rps=total.requests / seconds if seconds else 0.0,
                p50_ms=total.percentile(0.50),
                p95_ms=total.percentile(0.95),
                p99_ms=total.percentile(0.99),
                max_ms=float(max(total.times, default=0)),
            )
        )
    return rows


def write_csv(path: Path, rows: list[StepRow]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([getattr(row, column) for column in COLUMNS])


def read_csv(path: Path) -> list[StepRow]:
    with path.open() as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != COLUMNS:
            msg = f"{path}: not a steps.csv (columns {reader.fieldnames})"
            raise ValueError(msg)
        return [
            StepRow(
                phase=int(r["phase"]),
                name=r["name"],
                target_rps=float(r["target_rps"]),
                users=int(r["users"]),
                measured_from=float(r["measured_from"]),
                measured_to=float(r["measured_to"]),
                requests=int(r["requests"]),
                failures=int(r["failures"]),
                rps=float(r["rps"]),
                p50_ms=float(r["p50_ms"]),
                p95_ms=float(r["p95_ms"]),
                p99_ms=float(r["p99_ms"]),
                max_ms=float(r["max_ms"]),
            )
            for r in reader
        ]
