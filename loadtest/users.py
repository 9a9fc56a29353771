"""Simulated users of sbcntr, for ``locust -f loadtest/``.

``PageUser`` browses the frontend's pages as a person would (home, items,
add, favourite, notifications, mark read) with think time between pages;
``ApiUser`` calls the backend's API through the frontend's ``/api``. Every
request carries the run id (``X-Load-Test-Run``, in ``X-Request-Id`` and the
User-Agent), so its log lines and traces can be told apart and counted by
``sbcntrctl audit``.

Options (also as environment variables, and in the web UI) are listed by
``locust -f loadtest/ --help``; see loadtest/README.md.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import uuid
from pathlib import Path
from typing import Any

import gevent
from locust import HttpUser, constant_throughput, events, task
from locust.env import Environment

from sbcntrctl.loadtest.thresholds import RunFigures, Thresholds, missed

ITEM_IDS = re.compile(r'action="/items/(\d+)/favorite"')
UNREAD_IDS = re.compile(r'action="/notifications/(\d+)/read"')


@events.init_command_line_parser.add_listener
def add_options(parser: Any) -> None:
    default_run = "run-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    group = parser
    group.add_argument(
        "--run-id",
        env_var="LOAD_RUN_ID",
        default=default_run,
        help="marks every request of this run (set it on master and workers)",
    )
    group.add_argument(
        "--shape",
        env_var="LOAD_SHAPE",
        default="steady",
        choices=["steady", "step", "spike", "soak"],
        include_in_web_ui=True,
    )
    group.add_argument(
        "--target-rps",
        env_var="LOAD_TARGET_RPS",
        type=float,
        default=10.0,
        help="steady/soak/spike baseline requests per second (the book's 10)",
    )
    group.add_argument(
        "--user-rps",
        env_var="LOAD_USER_RPS",
        type=float,
        default=0.5,
        help="requests per second of one simulated user (think time)",
    )
    group.add_argument(
        "--shape-duration",
        env_var="LOAD_DURATION",
        type=float,
        default=60.0,
        help="seconds a steady, spike or soak run lasts",
    )
    group.add_argument("--step-rps", env_var="LOAD_STEP_RPS", type=float, default=10.0)
    group.add_argument(
        "--step-seconds",
        env_var="LOAD_STEP_SECONDS",
        type=float,
        default=30.0,
        help="hold time of each step (on AWS at least 180-300 s)",
    )
    group.add_argument("--steps", env_var="LOAD_STEPS", type=int, default=5)
    group.add_argument("--spike-factor", env_var="LOAD_SPIKE_FACTOR", type=float, default=5.0)
    group.add_argument(
        "--max-error-ratio", env_var="LOAD_MAX_ERROR_RATIO", type=float, default=0.01
    )
    group.add_argument("--max-p95-ms", env_var="LOAD_MAX_P95_MS", type=float, default=500.0)
    group.add_argument("--max-p99-ms", env_var="LOAD_MAX_P99_MS", type=float, default=1000.0)
    group.add_argument("--min-rps", env_var="LOAD_MIN_RPS", type=float, default=0.0)
    group.add_argument(
        "--report-dir",
        env_var="LOAD_REPORT_DIR",
        default="",
        help="folder for summary.json (and cpu.csv with --sample-pids)",
    )
    group.add_argument(
        "--sample-pids",
        env_var="LOAD_SAMPLE_PIDS",
        default="",
        help="name=pid,... of local service processes whose CPU to record",
    )


class SbcntrUser(HttpUser):
    abstract = True

    def on_start(self) -> None:
        self.run_id: str = self.environment.parsed_options.run_id
        self.client.headers.update(
            {"User-Agent": f"sbcntr-loadtest/{self.run_id}", "X-Load-Test-Run": self.run_id}
        )

    def wait_time(self) -> float:
        """Think time that holds this user at ``--user-rps`` requests per second."""
        return float(constant_throughput(self.environment.parsed_options.user_rps)(self))

    def _headers(self) -> dict[str, str]:
        return {"X-Request-Id": f"{self.run_id}-{uuid.uuid4().hex[:16]}"}

    def call(self, method: str, path: str, name: str, expect: int, **kwargs: Any) -> Any:
        with self.client.request(
            method,
            path,
            name=name,
            headers=self._headers(),
            allow_redirects=False,
            catch_response=True,
            **kwargs,
        ) as response:
            if response.status_code != expect:
                response.failure(f"{method} {name}: {response.status_code}, expected {expect}")
            return response


class PageUser(SbcntrUser):
    """A person on the frontend's pages."""

    weight = 3

    item_ids: list[int]
    unread_ids: list[int]

    def on_start(self) -> None:
        super().on_start()
        self.item_ids, self.unread_ids = [], []

    @task(3)
    def home(self) -> None:
        self.call("GET", "/", "/", 200)

    @task(4)
    def items(self) -> None:
        response = self.call("GET", "/items", "/items", 200)
        self.item_ids = [int(i) for i in ITEM_IDS.findall(response.text or "")]

    @task(1)
    def add_item(self) -> None:
        title = f"load {uuid.uuid4().hex[:8]}"
        self.call("POST", "/items", "/items [add]", 303, data={"title": title, "name": "locust"})

    @task(1)
    def favourite(self) -> None:
        if self.item_ids:
            item = random.choice(self.item_ids)  # noqa: S311
            value = random.choice(["true", "false"])  # noqa: S311
            self.call(
                "POST",
                f"/items/{item}/favorite",
                "/items/{id}/favorite",
                303,
                data={"favorite": value},
            )

    @task(2)
    def notifications(self) -> None:
        response = self.call("GET", "/notifications", "/notifications", 200)
        self.unread_ids = [int(i) for i in UNREAD_IDS.findall(response.text or "")]

    @task(1)
    def mark_read(self) -> None:
        if self.unread_ids:
            notification = self.unread_ids.pop()
            self.call(
                "POST", f"/notifications/{notification}/read", "/notifications/{id}/read", 303
            )


class ApiUser(SbcntrUser):
    """A program using the API through the frontend."""

    weight = 1

    @task(3)
    def hello(self) -> None:
        self.call("GET", "/api/helloworld", "/api/helloworld", 200)

    @task(3)
    def items(self) -> None:
        self.call("GET", "/api/items", "/api/items", 200)

    @task(1)
    def add_item(self) -> None:
        self.call(
            "POST",
            "/api/items",
            "/api/items [add]",
            201,
            json={"title": f"api {uuid.uuid4().hex[:8]}"},
        )

    @task(2)
    def unread(self) -> None:
        self.call("GET", "/api/notifications/count", "/api/notifications/count", 200)


def _figures(environment: Environment) -> RunFigures:
    total = environment.stats.total
    return RunFigures(
        requests=total.num_requests,
        failures=total.num_failures,
        p95_ms=float(total.get_response_time_percentile(0.95) or 0),
        p99_ms=float(total.get_response_time_percentile(0.99) or 0),
        rps=float(total.total_rps),
    )


@events.quitting.add_listener
def check_thresholds(environment: Environment, **_: Any) -> None:
    """Print the verdict; a missed threshold makes locust exit with status 1."""
    if environment.parsed_options is None or environment.runner is None:
        return
    if type(environment.runner).__name__ == "WorkerRunner":
        return
    options = environment.parsed_options
    limits = Thresholds(
        options.max_error_ratio, options.max_p95_ms, options.max_p99_ms, options.min_rps
    )
    figures = _figures(environment)
    problems = missed(figures, limits)
    for problem in problems:
        print(f"THRESHOLD MISSED: {problem}")
    print(
        f"run {options.run_id}: {figures.requests} requests, {figures.failures} failed, "
        f"p95 {figures.p95_ms:.0f} ms, p99 {figures.p99_ms:.0f} ms, {figures.rps:.2f} req/s: "
        f"{'FAIL' if problems else 'PASS'}"
    )
    if problems:
        environment.process_exit_code = 1
    if options.report_dir:
        folder = Path(options.report_dir)
        folder.mkdir(parents=True, exist_ok=True)
        summary = {"run_id": options.run_id, **vars(figures), "missed": problems}
        (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


@events.test_start.add_listener
def sample_cpu(environment: Environment, **_: Any) -> None:
    """With --sample-pids, record the CPU time of local service processes every second."""
    options = environment.parsed_options
    if options is None or not options.sample_pids or not options.report_dir:
        return
    if type(environment.runner).__name__ == "WorkerRunner":
        return
    pids = dict(pair.split("=", 1) for pair in options.sample_pids.split(","))
    folder = Path(options.report_dir)
    folder.mkdir(parents=True, exist_ok=True)

    def loop() -> None:
        from sbcntrctl.bench.procs import cpu_seconds  # noqa: PLC0415

        with (folder / "cpu.csv").open("w") as out:
            out.write("timestamp,name,cpu_seconds\n")
            while True:
                now = dt.datetime.now(dt.UTC).timestamp()
                for name, pid in pids.items():
                    out.write(f"{now:.3f},{name},{cpu_seconds(int(pid)):.3f}\n")
                out.flush()
                gevent.sleep(1)

    gevent.spawn(loop)


__all__ = ["ApiUser", "PageUser"]
