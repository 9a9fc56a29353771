"""The load shapes as pure functions of elapsed time.

A shape is a list of :class:`Phase` (a request rate held for a time); every
shape ends with a phase at its baseline rate, so a run never stops at its
peak, and every phase length is either given or scaled to ``duration``:

* ``steady`` and ``soak``: one phase at ``target_rps`` for ``duration``;
* ``spike``: baseline, ``target_rps x spike_factor``, baseline again; by
  default a third of ``duration`` each, or ``spike_seconds`` of spike with
  the rest split evenly before and after;
* ``step``: ``steps`` steps of ``step_rps`` more each, then the first step's
  rate again (the baseline); each ``step_seconds`` long, by default
  ``duration / (steps + 1)``.

Users are sized from a request rate: each simulated user makes
``user_rps`` requests per second, so ``users = rps / user_rps``. :func:`tick`
is what Locust's ``LoadTestShape.tick`` returns: ``(users, spawn_rate)``, or
None once the last phase is over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Tick = tuple[int, float] | None

SHAPE_NAMES = ("steady", "step", "spike", "soak")
# A distributed run's shape runs on the master, which sends its workers the run's
# wall-clock end under this Locust message type: no worker starts a request later.
WINDOW_MESSAGE = "sbcntr_window"


@dataclass(frozen=True)
class ShapeOptions:
    shape: str = "steady"
    target_rps: float = 10.0  # the book's example requirement
    user_rps: float = 0.5  # per simulated user: one request every 2 s of think time
    duration: float = 60.0  # the whole run, every phase included
    step_rps: float = 10.0  # step: height of each step
    step_seconds: float = 0.0  # step: hold time; 0 = duration / (steps + 1)
    steps: int = 5
    spike_factor: float = 5.0  # spike: peak = target x factor
    spike_seconds: float = 0.0  # spike: its length; 0 = a third of duration

    @classmethod
    def from_options(cls, options: Any) -> ShapeOptions:
        """From Locust's parsed options (the options loadtest/users.py adds)."""
        return cls(
            shape=options.shape,
            target_rps=options.target_rps,
            user_rps=options.user_rps,
            duration=options.shape_duration,
            step_rps=options.step_rps,
            step_seconds=options.step_seconds,
            steps=options.steps,
            spike_factor=options.spike_factor,
            spike_seconds=options.spike_seconds,
        )


@dataclass(frozen=True)
class Phase:
    """``rps`` held from ``start`` to ``end`` (seconds since the run started)."""

    index: int
    name: str
    rps: float
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def _positive(name: str, value: float) -> None:
    if not value > 0:
        msg = f"{name} must be greater than 0, got {value:g}"
        raise ValueError(msg)


def phases(options: ShapeOptions) -> list[Phase]:
    """The shape's phases in order; raises ValueError naming the option at fault."""
    if options.shape not in SHAPE_NAMES:
        msg = f"unknown shape {options.shape!r}: one of {', '.join(SHAPE_NAMES)}"
        raise ValueError(msg)
    _positive("--user-rps", options.user_rps)
    if options.shape == "step":
        return _step_phases(options)
    _positive("--target-rps", options.target_rps)
    _positive("--shape-duration", options.duration)
    if options.shape in ("steady", "soak"):
        return [Phase(0, options.shape, options.target_rps, 0.0, options.duration)]
    if options.spike_factor < 1:
        msg = f"--spike-factor must be at least 1, got {options.spike_factor:g}"
        raise ValueError(msg)
    spike = options.spike_seconds or options.duration / 3
    before = (options.duration - spike) / 2
    if spike < 0 or before <= 0:
        msg = (
            f"--spike-seconds {spike:g} leaves no baseline before and after it in "
            f"--shape-duration {options.duration:g}"
        )
        raise ValueError(msg)
    peak = options.target_rps * options.spike_factor
    return [
        Phase(0, "baseline", options.target_rps, 0.0, before),
        Phase(1, "spike", peak, before, before + spike),
        Phase(2, "baseline", options.target_rps, before + spike, options.duration),
    ]


def _step_phases(options: ShapeOptions) -> list[Phase]:
    _positive("--step-rps", options.step_rps)
    if options.steps < 1:
        msg = f"--steps must be at least 1, got {options.steps}"
        raise ValueError(msg)
    if options.step_seconds:
        _positive("--step-seconds", options.step_seconds)
        hold = options.step_seconds
    else:
        _positive("--shape-duration", options.duration)
        hold = options.duration / (options.steps + 1)
    found = [
        Phase(i, f"step {i + 1}", options.step_rps * (i + 1), i * hold, (i + 1) * hold)
        for i in range(options.steps)
    ]
    end = options.steps * hold
    found.append(Phase(options.steps, "baseline", options.step_rps, end, end + hold))
    return found


def total_seconds(options: ShapeOptions) -> float:
    return phases(options)[-1].end


def phase_at(elapsed: float, options: ShapeOptions) -> Phase | None:
    """The phase running ``elapsed`` seconds into the run; None after the last."""
    for phase in phases(options):
        if phase.start <= elapsed < phase.end:
            return phase
    return None


def users_for(rps: float, options: ShapeOptions) -> int:
    return max(1, math.ceil(rps / options.user_rps))


def tick(elapsed: float, options: ShapeOptions) -> Tick:
    """Users of the phase at ``elapsed``, added or removed at once (the users
    spread their own first requests over one think time: loadtest/users.py)."""
    phase = phase_at(elapsed, options)
    if phase is None:
        return None
    most = max(users_for(p.rps, options) for p in phases(options))
    return users_for(phase.rps, options), float(most)
