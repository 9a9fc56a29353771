"""The load shape of ``locust -f loadtest/``, chosen with ``--shape`` (or LOAD_SHAPE):
``steady``, ``step``, ``spike`` or ``soak``. Each ends with a phase at its
baseline rate and stops by itself (sbcntrctl.loadtest.shapes)."""

from __future__ import annotations

import time

from locust import LoadTestShape

from sbcntrctl.loadtest.shapes import ShapeOptions, Tick, tick


class SbcntrShape(LoadTestShape):
    started_at: float | None = None  # wall clock when the run started (phases count from it)

    def reset_time(self) -> None:
        super().reset_time()
        self.started_at = time.time()

    def tick(self) -> Tick:
        options = ShapeOptions.from_options(self.runner.environment.parsed_options)
        return tick(self.get_run_time(), options)
