"""The load shape of ``locust -f loadtest/``, chosen with ``--shape`` (or LOAD_SHAPE):
``steady``, ``step``, ``spike`` or ``soak``. Each ends with a phase at its
baseline rate and stops by itself (sbcntrctl.loadtest.shapes). In a distributed
run the shape runs on the master and sets the users of the whole cluster."""

from __future__ import annotations

import time

from locust import LoadTestShape
from locust.runners import MasterRunner

from sbcntrctl.loadtest.shapes import WINDOW_MESSAGE, ShapeOptions, Tick, tick, total_seconds


class SbcntrShape(LoadTestShape):
    started_at: float | None = None  # wall clock when the run started (phases count from it)
    ends_at: float | None = None  # wall clock when its last phase ends: no request starts later

    def reset_time(self) -> None:
        super().reset_time()
        self.started_at = time.time()
        options = ShapeOptions.from_options(self.runner.environment.parsed_options)
        self.ends_at = self.started_at + total_seconds(options)
        if isinstance(self.runner, MasterRunner):
            # the workers' users check the end themselves (loadtest/users.py)
            window = {"started_at": self.started_at, "ends_at": self.ends_at}
            self.runner.send_message(WINDOW_MESSAGE, window)

    def tick(self) -> Tick:
        options = ShapeOptions.from_options(self.runner.environment.parsed_options)
        return tick(self.get_run_time(), options)
