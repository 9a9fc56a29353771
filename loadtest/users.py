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
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, events, task
from locust.env import Environment
from locust.runners import STATE_MISSING, STATE_STOPPED, STATE_STOPPING, MasterRunner, WorkerRunner

from sbcntrctl.loadtest import generators, runinfo, shapes, steps, upload, verdict
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
        "--upload-s3",
        env_var="LOAD_UPLOAD_S3",
        default="",
        help="s3://BUCKET/PREFIX/: upload the reports there at the end (a master on ECS)",
        **hidden,
    )
    add(
        "--sample-pids",
        env_var="LOAD_SAMPLE_PIDS",
        default="",
        help="name=PID[+PID],... of local service processes whose CPU to record",
        **hidden,
    )


def _is_worker(environment: Environment) -> bool:
    return isinstance(environment.runner, WorkerRunner)


def _is_master(environment: Environment) -> bool:
    return isinstance(environment.runner, MasterRunner)


# Requests per wall-clock second they started in (workers send theirs to the master).
SECONDS = steps.SecondBins()
OPTIONS: list[Any] = []  # the run's parsed options, once Locust has them
# The load generators' CPU and losses (workers send their readings to the master).
GENERATORS = generators.Generators()
# On a worker: the wall-clock end of the run, sent by the master (the shape runs there).
WINDOW: dict[str, float] = {}
# Seconds the master waits at the end for each worker's last report (sent every 3 s).
FINAL_REPORT_WAIT = 10.0


def ends_at(environment: Environment) -> float | None:
    """When the run's last phase ends (wall clock): no request starts later.

    The shape runs in the local or master process; a worker knows the end from
    the master's window message.
    """
    return getattr(environment.shape_class, "ends_at", None) or WINDOW.get("ends_at")


def phase_started_at(environment: Environment, now: float) -> float | None:
    """When the phase running at ``now`` started (wall clock), or None outside a shaped run.

    Users pace themselves from it, not from when they were spawned: users spawned
    late (a worker spawning thousands, a loaded machine) still make every request
    of the phase, instead of the run falling short by their delay.
    """
    started = getattr(environment.shape_class, "started_at", None) or WINDOW.get("started_at")
    options = environment.parsed_options
    if started is None or options is None:
        return None
    phase = shapes.phase_at(now - started, shapes.ShapeOptions.from_options(options))
    return started + phase.start if phase is not None else None


@events.init.add_listener
def check_options(environment: Environment, **_: Any) -> None:
    """Refuse bad options before anything is sent: one line naming the option, exit 2."""
    options = environment.parsed_options
    if options is None:
        return
    try:
        runinfo.check_run_id(options.run_id)
        if not _is_worker(environment):  # the reports are the master's (or the single run's)
            runinfo.check_reports_free(runinfo.report_dir(options.run_id, options.report_dir))
        shapes.phases(shapes.ShapeOptions.from_options(options))
        if options.sample_pids and not _is_worker(environment):
            runinfo.parse_pids(options.sample_pids)
        if options.upload_s3:
            upload.parse(options.upload_s3)
    except ValueError as exc:
        print(f"locust -f loadtest/: {exc}", file=sys.stderr)
        sys.exit(2)
    if not environment.stop_timeout:
        environment.stop_timeout = DEFAULT_STOP_TIMEOUT
    OPTIONS[:] = [options]
    if _is_worker(environment):
        assert environment.runner is not None
        environment.runner.register_message(shapes.WINDOW_MESSAGE, _take_window)


def _take_window(msg: Any, **_: Any) -> None:
    WINDOW.update(started_at=float(msg.data["started_at"]), ends_at=float(msg.data["ends_at"]))


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
    data[generators.REPORT_KEY] = CPU.take()


@events.worker_report.add_listener
def merge_seconds(client_id: str, data: dict[str, Any], **_: Any) -> None:
    SECONDS.merge(data.get("sbcntr_seconds", {}))
    GENERATORS.report(client_id, data)


class SbcntrUser(FastHttpUser):
    """One simulated user: its think time, its run marks, and one request per time slot.

    Locust's FastHttpUser (geventhttpclient): several times less CPU per request
    than HttpUser (requests), so one worker core carries more req/s
    (loadtest/README.md has the measured figures). It keeps cookies and
    connections per user as HttpUser did; redirects are not followed.
    """

    abstract = True
    host = LOCAL_FRONTEND  # what `dev.py up` serves; --host or the web UI override it

    def on_start(self) -> None:
        self.run_id: str = self.environment.parsed_options.run_id
        self.run_headers = {
            "User-Agent": f"sbcntr-loadtest/{self.run_id}",
            "X-Load-Test-Run": self.run_id,
        }
        # Users arrive all at once when a phase starts; each begins at a random
        # point of the phase's first think time, so requests start evenly spread
        # at the phase's rate instead of in bursts of every user at the same
        # instant. A user spawned late sends at once the request it should
        # already have sent, then keeps its place in the think time (users
        # spawned late together do not all send in the same instant after).
        interval = 1 / self.environment.parsed_options.user_rps
        now = time.time()
        anchor = phase_started_at(self.environment, now) or now
        self.next_start = anchor + random.uniform(0, interval)  # noqa: S311
        if self.next_start < now - interval:  # more than a think time late: no catching up
            self.next_start = now + random.uniform(0, interval)  # noqa: S311
        gevent.sleep(max(0.0, self.next_start - now))

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
        end = ends_at(self.environment)
        if end is not None and self.next_start >= end:
            return end - now + 60  # waits there until the shape stops it
        return self.next_start - now

    def actions(self) -> list[Action]:
        """(weight, action) of every action this user can do now."""
        raise NotImplementedError

    @task
    def next_action(self) -> None:
        """One request: an action picked by weight among those that can act now."""
        end = ends_at(self.environment)
        if end is not None and time.time() >= end:
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
            headers={**self.run_headers, "X-Request-Id": f"{self.run_id}-{uuid.uuid4().hex[:16]}"},
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


def _await_final_reports(environment: Environment) -> list[str]:
    """On a master, wait for each worker's last report (sent after its users stopped,
    so it holds their last requests); one problem line per worker that sent none."""
    if not _is_master(environment):
        return []
    deadline = time.monotonic() + FINAL_REPORT_WAIT
    while GENERATORS.waiting_for() and time.monotonic() < deadline:
        gevent.sleep(0.1)
    return [
        f"worker {g.name} sent no last report within {FINAL_REPORT_WAIT:.0f} s: its last "
        "requests are missing from the figures"
        for g in GENERATORS.waiting_for()
    ]


@events.quitting.add_listener
def check_thresholds(environment: Environment, **_: Any) -> None:
    """Print the verdict and write the run's reports; a missed threshold makes locust exit 1.

    In a distributed run this runs on the master, over the figures of every
    worker's requests; a worker lost during the run fails it.
    """
    if environment.parsed_options is None or environment.runner is None:
        return
    if _is_worker(environment) or not STARTED:
        return  # a worker, or a web UI closed before any run: nothing to report
    late = _await_final_reports(environment)
    if not _is_master(environment):
        for found in CPU.take():
            GENERATORS.take("local", found)
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
    problems = missed(figures, limits) + GENERATORS.problems(started) + late
    summary = {
        "run_id": options.run_id,
        "shape": options.shape,
        "started_at": _iso(started),
        "ended_at": _iso(now),
        "seconds": round(sending, 3),
        **vars(figures),
        "missed": problems,
        "warnings": GENERATORS.warnings(),
        **GENERATORS.summary(distributed=_is_master(environment)),
    }
    print("\n".join(verdict.render(summary)))
    if problems:
        environment.process_exit_code = 1
    folder = runinfo.report_dir(options.run_id, options.report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if options.shape != "soak" and shape is not None:
        shape_of_run = shapes.ShapeOptions.from_options(options)
        phases = shapes.phases(shape_of_run)
        users = [shapes.users_for(p.rps, shape_of_run) for p in phases]
        rows = steps.summarize(SECONDS, phases, started, users)
        steps.write_csv(folder / "steps.csv", rows)
    print(f"reports: {folder}")
    if options.upload_s3:
        _upload(environment, folder)


def _upload(environment: Environment, folder: Path) -> None:
    """Upload the reports (Locust wrote its HTML report before this); a failure fails the run."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    from sbcntrctl import awsenv  # noqa: PLC0415 - only a run that uploads needs boto3

    options = environment.parsed_options
    assert options is not None
    html = Path(options.html_file) if options.html_file else None
    try:
        written = upload.upload(options.upload_s3, options.run_id, folder, html, awsenv.client)
    except (BotoCoreError, ClientError, awsenv.RegionError, OSError) as exc:
        print(f"upload to {options.upload_s3} failed: {exc}", file=sys.stderr)
        environment.process_exit_code = 1
        return
    for url in written:
        print(f"uploaded: {url}")


STARTED: list[float] = []  # when each run of this process started


@events.test_start.add_listener
def note_start(**_: Any) -> None:
    STARTED.append(time.time())


class CpuMeter:
    """This process's CPU readings while it generates load (a local run or a worker).

    One reading when the run starts, one every ``interval`` seconds, and a last
    one (``final``) when all its users have stopped; :meth:`take` hands over
    the readings not taken yet (a worker sends them to the master with its report).
    """

    def __init__(self, interval: float = 3.0) -> None:
        self.interval = interval
        self.pending: list[dict[str, Any]] = []
        self.loop: gevent.Greenlet[Any, Any] | None = None

    def read(self, *, final: bool = False) -> None:
        self.pending.append(generators.reading(time.time(), time.process_time(), final=final))

    def start(self) -> None:
        self.stop_loop()
        self.pending = []
        self.read()

        def every_interval() -> None:
            while True:
                gevent.sleep(self.interval)
                self.read()

        self.loop = gevent.spawn(every_interval)

    def stop_loop(self) -> None:
        if self.loop is not None:
            self.loop.kill()
            self.loop = None

    def stop(self) -> None:
        self.stop_loop()
        self.read(final=True)

    def take(self) -> list[dict[str, Any]]:
        taken, self.pending = self.pending, []
        return taken


CPU = CpuMeter()


@events.test_start.add_listener
def start_generator(environment: Environment, **_: Any) -> None:
    """Measure this process's CPU while it generates load; on a master, watch for lost workers."""
    GENERATORS.by_name.clear()  # a new run (the web UI starts several in one process)
    if _is_master(environment):
        gevent.spawn(_watch_workers, environment)
    else:
        CPU.start()


@events.test_stop.add_listener
def stop_generator(environment: Environment, **_: Any) -> None:
    if not _is_master(environment):
        CPU.stop()


def _watch_workers(environment: Environment) -> None:
    """Note each worker that goes missing (no heartbeat) or leaves while the run goes on.

    Workers that stopped with the run leave too, after their master told them
    to stop: only those gone while it still ran are lost.
    """
    runner = environment.runner
    assert isinstance(runner, MasterRunner)
    while runner.state not in (STATE_STOPPING, STATE_STOPPED):
        for worker in runner.clients.all:
            GENERATORS.get(worker.id)  # known from the start, even before its first report
        for generator in GENERATORS.by_name.values():
            client = runner.clients.get(generator.name)
            if generator.lost_at is None and (client is None or client.state == STATE_MISSING):
                generator.lost_at = time.time()
        gevent.sleep(0.5)


@events.test_start.add_listener
def sample_cpu(environment: Environment, **_: Any) -> None:
    """With --sample-pids, record the CPU time of local service processes every second
    and once more when the run stops (several PIDs of one name added together).

    A process that exits during the run is reported on stderr once and no longer
    sampled (``sbcntrctl capacity`` then refuses the steps its samples do not
    cover); the others go on. ``cpu.csv`` is closed however the run ends.
    """
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
        for name, of_name in list(pids.items()):
            try:
                if not all(runinfo.running(pid) for pid in of_name):
                    raise ProcessLookupError
                used = sum(cpu_seconds(pid) for pid in of_name)
            except OSError:  # ProcessLookupError, or /proc/PID gone while read
                print(
                    f"sample-pids: {name} ({'+'.join(map(str, of_name))}) exited "
                    f"{now - STARTED[-1]:.0f} s into the run: its CPU is no longer sampled",
                    file=sys.stderr,
                )
                del pids[name]
                continue
            out.write(f"{now:.3f},{name},{used:.3f}\n")
        out.flush()

    def loop() -> None:
        while pids:
            sample()
            gevent.sleep(1)

    sampler = gevent.spawn(loop)

    def last_sample(**_: Any) -> None:
        environment.events.test_stop.remove_listener(last_sample)
        sampler.kill()
        try:
            sample()  # after the last request: the final phase is covered to its end
        finally:
            out.close()

    environment.events.test_stop.add_listener(last_sample)


__all__ = ["ApiUser", "PageUser"]
