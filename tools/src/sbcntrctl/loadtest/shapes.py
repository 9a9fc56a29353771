"""The load shapes as pure functions of elapsed time: ``(users, spawn_rate)`` or None to stop.

Users are sized from a request rate: each simulated user makes at most
``user_rps`` requests per second (``constant_throughput``), so ``users =
rps / user_rps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Tick = tuple[int, float] | None


@dataclass(frozen=True)
class ShapeOptions:
    shape: str = "steady"
    target_rps: float = 10.0  # the book's example requirement
    user_rps: float = 0.5  # per simulated user: one request every 2 s of think time
    duration: float = 60.0  # steady and soak
    step_rps: float = 10.0  # step: height of each step
    step_seconds: float = 30.0  # step: hold time (3-5 minutes on AWS for alarms to fire)
    steps: int = 5
    spike_factor: float = 5.0  # spike: peak = target x factor
    spike_seconds: float = 20.0
    ramp_seconds: float = 5.0


def users_for(rps: float, options: ShapeOptions) -> int:
    return max(1, math.ceil(rps / options.user_rps))


def _spawn_rate(users: int, options: ShapeOptions) -> float:
    return max(1.0, users / max(options.ramp_seconds, 0.1))


def steady(elapsed: float, options: ShapeOptions) -> Tick:
    if elapsed >= options.duration:
        return None
    users = users_for(options.target_rps, options)
    return users, _spawn_rate(users, options)


def step(elapsed: float, options: ShapeOptions) -> Tick:
    """A staircase: ``steps`` steps of ``step_rps`` more each, held ``step_seconds``."""
    index = int(elapsed // options.step_seconds)
    if index >= options.steps:
        return None
    users = users_for(options.step_rps * (index + 1), options)
    return users, _spawn_rate(users_for(options.step_rps, options), options)


def spike(elapsed: float, options: ShapeOptions) -> Tick:
    """Baseline, a sudden burst to ``target x spike_factor``, then baseline again."""
    third = options.duration / 3
    if elapsed >= options.duration:
        return None
    base = users_for(options.target_rps, options)
    if third <= elapsed < third + options.spike_seconds:
        peak = users_for(options.target_rps * options.spike_factor, options)
        return peak, float(peak)  # all at once: that is the spike
    return base, float(base)


def soak(elapsed: float, options: ShapeOptions) -> Tick:
    return steady(elapsed, options)


SHAPES = {"steady": steady, "step": step, "spike": spike, "soak": soak}


def tick(elapsed: float, options: ShapeOptions) -> Tick:
    try:
        shape = SHAPES[options.shape]
    except KeyError:
        msg = f"unknown shape {options.shape!r}: one of {', '.join(SHAPES)}"
        raise ValueError(msg) from None
    return shape(elapsed, options)
