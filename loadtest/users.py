"""Simulated users of sbcntr, for ``locust -f loadtest/``.

``PageUser`` browses the frontend's pages as a person would (home, items,
add, favourite, notifications, mark read) with think time between pages;
``ApiUser`` calls the backend's API through the frontend's ``/api``, and
posts the notifications the page users later read. Every request carries the
run id (``X-Load-Test-Run``, in ``X-Request-Id`` and the User-Agent), so its
log lines and traces can be told apart and counted by ``sbcntrctl audit``;
every row it writes is marked too (loadtest/README.md says how to remove them).

Each time slot of a user (``--user-rps``) is one request: a user picks, by
weight, among the actions it can do now (no favourite before it has seen an
item, no mark-read without an unread notification in hand), so the run
delivers the rate it is set to.

The options are listed in loadtest/README.md (Locust prints ``--help`` before
it loads a locustfile, so ``locust -f loadtest/ --help`` shows only its own).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import gevent
from locust import HttpUser, events, task
from locust.env import Environment

from sbcntrctl.loadtest import runinfo, shapes, steps
from sbcntrctl.loadtest.thresholds import RunFigures, Thresholds, missed

ITEM_IDS = re.compile(r'action="/items/(\d+)/favorite"')
UNREAD_IDS = re.compile(r'action="/notifications/(\d+)/read"')
# Users finish the request they are in when the run stops (Locust's --stop-timeout),
# so no request is cut and missing from the figures; longer than any answer the
# frontend gives (its backend budget is 5 s).
DEFAULT_STOP_TIMEOUT = 30
LOCAL_FRONTEND = "http://127.0.0.1:8080"

Action = tuple[int, Callable[[], None]]


@events.init_command_line_parser.add_listener
def add_options(parser: Any) -> None:
    default_run = "run-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    add = parser.add_argument
    add(
        "--run-id",
        env_var="LOAD_RUN_ID",
        default=default_run,
        help="marks every request and row of this run (set the same on master and workers)",
    )
    add(
        "--shape",
        env_var="LOAD_SHAPE",
        default="steady",
        choices=list(shapes.SHAPE_NAMES),
        help="steady, step, spike or soak; each ends at its baseline rate and stops by itself",
    )
    add(
        "--target-rps",
        env_var="LOAD_TARGET_RPS",
        type=float,
        default=10.0,
        help="requests/s of steady and soak, baseline of spike (the book's 10)",
    )
    add(
        "--user-rps",
        env_var="LOAD_USER_RPS",
        type=float,
        default=0.5,
        help="requests/s of one simulated user (its think time)",
    )
    add(
        "--shape-duration",
        env_var="LOAD_DURATION",
        type=float,
        default=60.0,
        help="seconds the whole run lasts; the phases of spike and step scale to it",
    )
    add(
        "--step-rps",
        env_var="LOAD_STEP_RPS",
        type=float,
        default=10.0,
        help="step: requests/s added by each step",
    )
    add(
        "--step-seconds",
        env_var="LOAD_STEP_SECONDS",
        type=float,
        default=0.0,
        help="step: hold time of each step; 0 = duration / (steps + 1); on AWS 180-300",
    )
    add("--steps", env_var="LOAD_STEPS", type=int, default=5, help="step: number of steps")
    add(
        "--spike-factor",
        env_var="LOAD_SPIKE_FACTOR",
        type=float,
        default=5.0,
        help="spike: peak = target x factor",
    )
    add(
        "--spike-seconds",
        env_var="LOAD_SPIKE_SECONDS",
        type=float,
        default=0.0,
        help="spike: length of the peak; 0 = a third of the duration",
    )
    # The thresholds decide a headless run's exit status; the web UI is watched
    # instead (and its form renames options whose names hold digits: max_p95_ms).
    hidden = {"include_in_web_ui": False}
    add("--max-error-ratio", env_var="LOAD_MAX_ERROR_RATIO", type=float, default=0.01, **hidden)
    add("--max-p95-ms", env_var="LOAD_MAX_P95_MS", type=float, default=500.0, **hidden)
    add("--max-p99-ms", env_var="LOAD_MAX_P99_MS", type=float, default=1000.0, **hidden)
    add("--min-rps", env_var="LOAD_MIN_RPS", type=float, default=0.0, **hidden)
    add(
        "--report-dir",
        env_var="LOAD_REPORT_DIR",
        default="",
        help="folder for summary.json, steps.csv, cpu.csv; default reports/<run id>",
    )
    add(
        "--sample-pids",
        env_var="LOAD_SAMPLE_PIDS",
        default="",
        help="name=PID[+PID],... of local service processes whose CPU to record",
        **hidden,
    )


def _is_worker(environment: Environment) -> bool:
    return type(environment.runner).__name__ == "WorkerRunner"


# Requests per wall-clock second they started in (workers send theirs to the master).
SECONDS = steps.SecondBins()
OPTIONS: list[Any] = []  # the run's parsed options, once Locust has them


@events.init.add_listener
def check_options(environment: Environment, **_: Any) -> None:
    """Refuse bad options before anything is sent: one line naming the option, exit 2."""
    options = environment.parsed_options
    if options is None:
        return
    try:
        runinfo.check_run_id(options.run_id)
        shapes.phases(shapes.ShapeOptions.from_options(options))
        if options.sample_pids and not _is_worker(environment):
            runinfo.parse_pids(options.sample_pids)
    except ValueError as exc:
        print(f"locust -f loadtest/: {exc}", file=sys.stderr)
        sys.exit(2)
    if not environment.stop_timeout:
        environment.stop_timeout = DEFAULT_STOP_TIMEOUT
    OPTIONS[:] = [options]


@events.request.add_listener
def record_request(
    start_time: float | None = None,
    response_time: float = 0.0,
    exception: BaseException | None = None,
    **_: Any,
) -> None:
    if OPTIONS and OPTIONS[0].shape == "soak":
        # hours at one rate: its one phase is Locust's totals, and a histogram
        # per second would grow all along
        return
    started = start_time if start_time is not None else time.time()
    SECONDS.add(started, response_time, bool(exception))


@events.report_to_master.add_listener
def send_seconds(data: dict[str, Any], **_: Any) -> None:
    data["sbcntr_seconds"] = SECONDS.take()


@events.worker_report.add_listener
def merge_seconds(data: dict[str, Any], **_: Any) -> None:
    SECONDS.merge(data.get("sbcntr_seconds", {}))


class SbcntrUser(HttpUser):
    abstract = True
    host = LOCAL_FRONTEND  # what `dev.py up` serves; --host or the web UI override it

    def on_start(self) -> None:
        self.run_id: str = self.environment.parsed_options.run_id
        self.client.headers.update(
            {"User-Agent": f"sbcntr-loadtest/{self.run_id}", "X-Load-Test-Run": self.run_id}
        )
        # Users arrive all at once when a phase starts; each begins at a random
        # point of its first think time, so requests start evenly spread at the
        # phase's rate instead of in bursts of every user at the same instant.
        interval = 1 / self.environment.parsed_options.user_rps
        self.next_start = time.time() + random.uniform(0, interval)  # noqa: S311
        gevent.sleep(self.next_start - time.time())

    def wait_time(self) -> float:
        """Think time that starts this user's requests every ``1 / --user-rps`` seconds.

        A user whose request took longer than the interval goes again at once,
        without catching up on the requests it missed. No request starts after
        the shape's end: Locust checks the shape once a second, so the run
        would otherwise go on for up to a second more than it was set to.
        """
        self.next_start += 1 / self.environment.parsed_options.user_rps
        now = time.time()
        self.next_start = max(self.next_start, now)
        ends_at = getattr(self.environment.shape_class, "ends_at", None)
        if ends_at is not None and self.next_start >= ends_at:
            return ends_at - now + 60  # waits there until the shape stops it
        return self.next_start - now

    def actions(self) -> list[Action]:
        """(weight, action) of every action this user can do now."""
        raise NotImplementedError

    @task
    def next_action(self) -> None:
        """One request: an action picked by weight among those that can act now."""
        ends_at = getattr(self.environment.shape_class, "ends_at", None)
        if ends_at is not None and time.time() >= ends_at:
            return  # the run is over; the shape stops this user within a second
        weights, actions = zip(*self.actions(), strict=True)
        random.choices(actions, weights)[0]()  # noqa: S311 - not for security

    def marked(self, text: str) -> str:
        """A title that tells this run's rows apart (the run id and a short unique part)."""
        return f"{self.run_id} {text} {uuid.uuid4().hex[:8]}"

    def call(self, method: str, path: str, name: str, expect: int, **kwargs: Any) -> Any:
        with self.client.request(
            method,
            path,
            name=name,
            headers={"X-Request-Id": f"{self.run_id}-{uuid.uuid4().hex[:16]}"},
            allow_redirects=False,
            catch_response=True,
            **kwargs,
        ) as response:
            # Locust files the failure under the request's name already.
            if response.status_code != expect:
                response.failure(f"status {response.status_code}, expected {expect}")
            return response


class PageUser(SbcntrUser):
    """A person on the frontend's pages."""

    weight = 3

    item_ids: list[int]
    unread_ids: list[int]

    def on_start(self) -> None:
        super().on_start()
        self.item_ids, self.unread_ids = [], []

    def actions(self) -> list[Action]:
        found: list[Action] = [
            (3, self.home),
            (4, self.items),
            (1, self.add_item),
            (2, self.notifications),
        ]
        if self.item_ids:
            found.append((1, self.favourite))
        if self.unread_ids:
            found.append((1, self.mark_read))
        return found

    def home(self) -> None:
        self.call("GET", "/", "/", 200)

    def items(self) -> None:
        response = self.call("GET", "/items", "/items", 200)
        self.item_ids = [int(i) for i in ITEM_IDS.findall(response.text or "")]

    def add_item(self) -> None:
        data = {"title": self.marked("page"), "name": runinfo.ITEM_NAME}
        self.call("POST", "/items", "/items [add]", 303, data=data)

    def favourite(self) -> None:
        item = random.choice(self.item_ids)  # noqa: S311
        value = random.choice(["true", "false"])  # noqa: S311
        self.call(
            "POST", f"/items/{item}/favorite", "/items/{id}/favorite", 303, data={"favorite": value}
        )

    def notifications(self) -> None:
        response = self.call("GET", "/notifications", "/notifications", 200)
        self.unread_ids = [int(i) for i in UNREAD_IDS.findall(response.text or "")]

    def mark_read(self) -> None:
        notification = self.unread_ids.pop()
        self.call("POST", f"/notifications/{notification}/read", "/notifications/{id}/read", 303)


class ApiUser(SbcntrUser):
    """A program using the API through the frontend; it also posts the notifications
    the page users read (more than they mark read, so they never run out)."""

    weight = 1

    def actions(self) -> list[Action]:
        return [
            (2, self.hello),
            (2, self.items),
            (1, self.add_item),
            (2, self.unread),
            (3, self.notify),
        ]

    def hello(self) -> None:
        self.call("GET", "/api/helloworld", "/api/helloworld", 200)

    def items(self) -> None:
        self.call("GET", "/api/items", "/api/items", 200)

    def add_item(self) -> None:
        body = {"title": self.marked("api"), "name": runinfo.ITEM_NAME}
        self.call("POST", "/api/items", "/api/items [add]", 201, json=body)

    def unread(self) -> None:
        self.call("GET", "/api/notifications/count", "/api/notifications/count", 200)

    def notify(self) -> None:
        body = {"title": self.marked("notice"), "category": runinfo.NOTIFICATION_CATEGORY}
        self.call("POST", "/api/notifications", "/api/notifications [add]", 201, json=body)


def _figures(environment: Environment, sending_seconds: float) -> RunFigures:
    total = environment.stats.total
    return RunFigures(
        requests=total.num_requests,
        failures=total.num_failures,
        p95_ms=float(total.get_response_time_percentile(0.95) or 0),
        p99_ms=float(total.get_response_time_percentile(0.99) or 0),
        # Locust's own total_rps divides by the time to the last request (one
        # think time short of the run), which overstates the rate of short runs.
        rps=total.num_requests / sending_seconds if sending_seconds > 0 else 0.0,
    )


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds")


@events.quitting.add_listener
def check_thresholds(environment: Environment, **_: Any) -> None:
    """Print the verdict and write the run's reports; a missed threshold makes locust exit 1."""
    if environment.parsed_options is None or environment.runner is None:
        return
    if _is_worker(environment) or not STARTED:
        return  # a worker, or a web UI closed before any run: nothing to report
    options = environment.parsed_options
    limits = Thresholds(
        options.max_error_ratio, options.max_p95_ms, options.max_p99_ms, options.min_rps
    )
    now = time.time()
    shape = environment.shape_class
    started = getattr(shape, "started_at", None) or environment.stats.start_time
    ends_at = getattr(shape, "ends_at", None) or now
    sending = min(now, ends_at) - started  # requests start only in this window
    figures = _figures(environment, sending)
    problems = missed(figures, limits)
    for problem in problems:
        print(f"THRESHOLD MISSED: {problem}")
    print(
        f"run {options.run_id}: {figures.requests} requests, {figures.failures} failed, "
        f"p95 {figures.p95_ms:.0f} ms, p99 {figures.p99_ms:.0f} ms, {figures.rps:.2f} req/s "
        f"over {sending:.1f} s: {'FAIL' if problems else 'PASS'}"
    )
    if problems:
        environment.process_exit_code = 1
    folder = runinfo.report_dir(options.run_id, options.report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {
        "run_id": options.run_id,
        "shape": options.shape,
        "started_at": _iso(started),
        "ended_at": _iso(now),
        "seconds": round(sending, 3),
        **vars(figures),
        "missed": problems,
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if options.shape != "soak" and shape is not None:
        shape_of_run = shapes.ShapeOptions.from_options(options)
        phases = shapes.phases(shape_of_run)
        users = [shapes.users_for(p.rps, shape_of_run) for p in phases]
        rows = steps.summarize(SECONDS, phases, started, users)
        steps.write_csv(folder / "steps.csv", rows)
    print(f"reports: {folder}")


STARTED: list[float] = []  # when each run of this process started


@events.test_start.add_listener
def note_start(**_: Any) -> None:
    STARTED.append(time.time())


@events.test_start.add_listener
def sample_cpu(environment: Environment, **_: Any) -> None:
    """With --sample-pids, record the CPU time of local service processes every second
    and once more when the run stops (several PIDs of one name added together)."""
    options = environment.parsed_options
    if options is None or not options.sample_pids or _is_worker(environment):
        return
    from sbcntrctl.bench.procs import cpu_seconds  # noqa: PLC0415

    pids = runinfo.parse_pids(options.sample_pids)
    folder = runinfo.report_dir(options.run_id, options.report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    out = (folder / "cpu.csv").open("w")
    out.write("timestamp,name,cpu_seconds\n")

    def sample() -> None:
        now = time.time()
        for name, of_name in pids.items():
            used = sum(cpu_seconds(pid) for pid in of_name)
            out.write(f"{now:.3f},{name},{used:.3f}\n")
        out.flush()

    def loop() -> None:
        while True:
            sample()
            gevent.sleep(1)

    sampler = gevent.spawn(loop)

    def last_sample(**_: Any) -> None:
        sampler.kill()
        sample()  # after the last request: the final phase is covered to its end
        out.close()
        environment.events.test_stop.remove_listener(last_sample)

    environment.events.test_stop.add_listener(last_sample)


__all__ = ["ApiUser", "PageUser"]
