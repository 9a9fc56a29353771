"""The load generators of a run: their CPU, and which of them were lost.

A run's requests come from one Locust process (a local run) or from the
workers of a master (a distributed run). Each of them reports the CPU time
it has used so far (user + system, ``time.process_time()``) with the
wall-clock time of the reading; workers send theirs to the master with
Locust's periodic worker report (every 3 s). From these readings:

* each generator's **average** CPU over the run and its **busiest**
  interval between two readings, in percent of one core (a Locust process
  runs on one core, so 100% is its limit);
* a warning when a generator's busiest interval went above
  :data:`SATURATED_PERCENT`: its users could not keep their pace, so the
  figures may show the generator's limit, not the service's;
* the workers the master lost during the run (no heartbeat any more, or
  gone before sending their last report): their users stopped, so the run
  delivered less than it was asked; a lost worker fails the run.

The result is the ``generators`` part of ``summary.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SATURATED_PERCENT = 90.0  # Locust's own CPU warning threshold
REPORT_KEY = "sbcntr_cpu"  # the readings' key in a worker's report to the master


@dataclass
class Generator:
    """One load-generating process and its CPU readings ``(wall clock, CPU seconds)``."""

    name: str
    readings: list[tuple[float, float]] = field(default_factory=list)
    final: bool = False  # its last report came after all its users had stopped
    lost_at: float | None = None  # when the master noticed it was gone

    def add(self, at: float, cpu_seconds: float) -> None:
        self.readings.append((at, cpu_seconds))

    @property
    def cpu_percent(self) -> float:
        """Average CPU over all its readings, in percent of one core."""
        if len(self.readings) < 2:  # two readings make an interval
            return 0.0
        (first_at, first_cpu), (last_at, last_cpu) = self.readings[0], self.readings[-1]
        return _percent(last_cpu - first_cpu, last_at - first_at)

    @property
    def peak_cpu_percent(self) -> float:
        """CPU of its busiest interval between two readings, in percent of one core."""
        pairs = zip(self.readings, self.readings[1:], strict=False)
        return max((_percent(b[1] - a[1], b[0] - a[0]) for a, b in pairs), default=0.0)

    @property
    def saturated(self) -> bool:
        return self.peak_cpu_percent > SATURATED_PERCENT


def _percent(cpu: float, wall: float) -> float:
    return 100.0 * cpu / wall if wall > 0 else 0.0


class Generators:
    """Every generator of a run, by name (the worker's client id, or ``local``)."""

    def __init__(self) -> None:
        self.by_name: dict[str, Generator] = {}

    def get(self, name: str) -> Generator:
        return self.by_name.setdefault(name, Generator(name))

    def report(self, name: str, data: dict[str, Any]) -> None:
        """Take the readings a worker put into its report (:func:`readings`)."""
        for found in data.get(REPORT_KEY, []):
            self.take(name, found)

    def take(self, name: str, found: dict[str, Any]) -> None:
        """Take one reading of generator ``name`` (one of :func:`reading`)."""
        generator = self.get(name)
        generator.add(float(found["at"]), float(found["cpu_seconds"]))
        generator.final = generator.final or bool(found.get("final"))

    def lost(self) -> list[Generator]:
        return [g for g in self.by_name.values() if g.lost_at is not None]

    def waiting_for(self) -> list[Generator]:
        """Generators still to send their last report (the lost ones never will)."""
        return [g for g in self.by_name.values() if not g.final and g.lost_at is None]

    def warnings(self) -> list[str]:
        """One line per saturated generator."""
        return [
            f"load generator {g.name} ran at {g.peak_cpu_percent:.0f}% CPU (above "
            f"{SATURATED_PERCENT:.0f}%): the generator, not the service, may have been the "
            "limit; add workers (loadtest/README.md)"
            for g in self.by_name.values()
            if g.saturated
        ]

    def problems(self, started_at: float) -> list[str]:
        """One line per lost worker: a run that lost one fails."""
        return [
            f"worker {g.name} lost {g.lost_at - started_at:.0f} s into the run: its users "
            "stopped, the run delivered less than asked"
            for g in self.lost()
            if g.lost_at is not None
        ]

    def summary(self, distributed: bool) -> dict[str, Any]:
        """The ``workers`` count and ``generators`` list of ``summary.json``."""
        return {
            "workers": len(self.by_name) if distributed else 0,
            "generators": [
                {
                    "name": g.name,
                    "cpu_percent": round(g.cpu_percent, 1),
                    "peak_cpu_percent": round(g.peak_cpu_percent, 1),
                    "lost": g.lost_at is not None,
                }
                for g in sorted(self.by_name.values(), key=lambda g: g.name)
            ],
        }


def reading(at: float, cpu_seconds: float, *, final: bool = False) -> dict[str, Any]:
    """A CPU reading as it goes into a worker's report to the master; ``final``: taken
    after all the generator's users stopped (its last one of the run)."""
    return {"at": at, "cpu_seconds": cpu_seconds, "final": final}
