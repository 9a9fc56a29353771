"""The load shape of ``locust -f loadtest/``, chosen with ``--shape`` (or LOAD_SHAPE):
``steady``, ``step``, ``spike`` or ``soak``. Each stops by itself."""

from __future__ import annotations

from locust import LoadTestShape

from sbcntrctl.loadtest.shapes import ShapeOptions, Tick, tick


class SbcntrShape(LoadTestShape):
    def tick(self) -> Tick:
        options = self.runner.environment.parsed_options
        shape = ShapeOptions(
            shape=options.shape,
            target_rps=options.target_rps,
            user_rps=options.user_rps,
            duration=options.shape_duration,
            step_rps=options.step_rps,
            step_seconds=options.step_seconds,
            steps=options.steps,
            spike_factor=options.spike_factor,
        )
        return tick(self.get_run_time(), shape)
