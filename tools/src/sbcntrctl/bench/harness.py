"""Configurations, rounds and measurements of one benchmark run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sbcntrctl.bench import environments, procs, wrk

SERVER_CPU = 0
CLIENT_CPU = 1


@dataclass(frozen=True)
class ProcessSpec:
    """One process of a configuration: ``role`` is ``front`` (driven by wrk) or ``back``."""

    role: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Config:
    name: str
    description: str
    path: str
    processes: tuple[ProcessSpec, ...]


@dataclass
class Sample:
    """One wrk run of one configuration in one round."""

    config: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_us_per_request: dict[str, float]
    rss_mb: dict[str, float] = field(default_factory=dict)


def _free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(values.items())


OFF = _env(AWS_XRAY_SDK_ENABLED="false", LOG_LEVEL="WARNING")
DEFAULT = _env(LOG_LEVEL="INFO")
OTEL = _env(TRACING_BACKEND="otel")


def configurations(
    sample_all_rules: Path, quick: bool, pythons: Mapping[str, str] | None = None
) -> list[Config]:
    """Every configuration of a run; ``quick`` keeps one pair.

    ``pythons`` are the services' interpreters (:mod:`sbcntrctl.bench.environments`);
    the baselines run on this one.
    """
    all_sampled = _env(LOG_LEVEL="INFO", XRAY_SAMPLING_RULES=str(sample_all_rules))
    pythons = pythons or {}
    app = (sys.executable, "-m", "sbcntrctl.bench.apps")
    backend = (pythons.get("backend", sys.executable), "-m", "backend")
    frontend = (pythons.get("frontend", sys.executable), "-m", "frontend")

    def pair(name: str, description: str, env: tuple[tuple[str, str], ...], **extra: str) -> Config:
        return Config(
            name,
            description,
            "/api/helloworld",
            (
                ProcessSpec("front", frontend, env + _env(**extra)),
                ProcessSpec("back", backend, env),
            ),
        )

    single = [
        Config("raw-asgi", "raw ASGI app on uvicorn", "/", (ProcessSpec("front", (*app, "raw")),)),
        Config(
            "fastapi",
            "bare FastAPI JSON endpoint",
            "/v1/helloworld",
            (ProcessSpec("front", (*app, "fastapi")),),
        ),
        Config(
            "backend-off",
            "backend /v1/helloworld, logging and tracing off",
            "/v1/helloworld",
            (ProcessSpec("front", backend, OFF),),
        ),
        Config(
            "backend-default",
            "backend, INFO access log, default sampling",
            "/v1/helloworld",
            (ProcessSpec("front", backend, DEFAULT),),
        ),
        Config(
            "backend-no-metrics",
            "as backend-default, EMF metrics off",
            "/v1/helloworld",
            (ProcessSpec("front", backend, DEFAULT + _env(METRICS_ENABLED="false")),),
        ),
        Config(
            "backend-sampled",
            "backend, INFO access log, every request sampled",
            "/v1/helloworld",
            (ProcessSpec("front", backend, all_sampled),),
        ),
        Config(
            "backend-otel-default",
            "as backend-default, traced with OpenTelemetry (OTLP/HTTP)",
            "/v1/helloworld",
            (ProcessSpec("front", backend, DEFAULT + OTEL),),
        ),
        Config(
            "backend-otel-sampled",
            "as backend-sampled, traced with OpenTelemetry (OTLP/HTTP)",
            "/v1/helloworld",
            (ProcessSpec("front", backend, all_sampled + OTEL),),
        ),
    ]
    pairs = [
        Config(
            "bare-pair",
            "bare FastAPI -> aiohttp -> bare FastAPI",
            "/api/helloworld",
            (ProcessSpec("front", (*app, "pair-front")), ProcessSpec("back", (*app, "fastapi"))),
        ),
        Config(
            "bare-pair-routers",
            "as bare-pair, each endpoint on an APIRouter included with include_router",
            "/api/helloworld",
            (
                ProcessSpec("front", (*app, "pair-front-routers")),
                ProcessSpec("back", (*app, "fastapi-routers")),
            ),
        ),
        pair("pair-off", "frontend -> backend, logging and tracing off", OFF),
        pair("pair-default", "frontend -> backend, INFO logs, default sampling", DEFAULT),
        pair("pair-sampled", "frontend -> backend, INFO logs, every request sampled", all_sampled),
        pair("pair-otel-default", "as pair-default, traced with OpenTelemetry", DEFAULT + OTEL),
        pair("pair-otel-sampled", "as pair-sampled, traced with OpenTelemetry", all_sampled + OTEL),
    ]
    if quick:
        return [c for c in single if c.name in ("backend-off", "backend-sampled")]
    return single + pairs


@dataclass
class Running:
    config: Config
    processes: dict[str, procs.Process]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.processes['front'].port}{self.config.path}"


def _process_env(
    spec: ProcessSpec, port: int, backend_port: int | None, sidecars: Sidecars
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_XRAY", "XRAY_", "OTEL_", "TRACING_"))
    }
    env.update(
        PORT=str(port),
        PYTHONUNBUFFERED="1",
        SHUTDOWN_DRAIN_SECONDS="0",
        # Segments and spans go to the sidecars' stand-in (start_sidecars).
        AWS_XRAY_DAEMON_ADDRESS=sidecars.xray_daemon_address,
        OTEL_EXPORTER_OTLP_ENDPOINT=sidecars.otlp_endpoint,
    )
    env.update(spec.env)
    if backend_port is not None:
        env["BACKEND_URL"] = f"http://127.0.0.1:{backend_port}"
    return env


def _migrate_if_backend(command: tuple[str, ...], env: dict[str, str], workdir: Path) -> None:
    """Give a backend its schema and seed data first, as every deployment does."""
    if command[-2:] == ("-m", "backend"):
        subprocess.run(
            [*command, "migrate", "--seed"], env=env, cwd=workdir, check=True, capture_output=True
        )


def start(config: Config, workdir: Path, sidecars: Sidecars) -> Running:
    """Start a configuration's processes on the server core, backend first.

    Each process writes its own log file, as each container has its own
    output stream: processes appending to one file contend for it.
    """
    started: dict[str, procs.Process] = {}
    backend_port = None
    for spec in sorted(config.processes, key=lambda s: s.role != "back"):
        log = workdir / f"{config.name}-{spec.role}.log"
        port = _free_port()
        env = _process_env(spec, port, backend_port if spec.role == "front" else None, sidecars)
        if spec.role == "back" and "DATABASE_URL" not in env:
            env["DATABASE_URL"] = f"sqlite+aiosqlite:///{workdir}/{config.name}.sqlite3"
        elif "DATABASE_URL" not in env:
            env["DATABASE_URL"] = f"sqlite+aiosqlite:///{workdir}/{config.name}-front.sqlite3"
        _migrate_if_backend(spec.command, env, workdir)
        began = time.perf_counter()
        process = procs.spawn(
            f"{config.name}/{spec.role}", list(spec.command), port, env, workdir, SERVER_CPU, log
        )
        try:
            procs.wait_ready(process, began)
        except RuntimeError as exc:
            for other in started.values():
                other.stop()
            msg = f"{exc}; its output:\n{_tail(log)}"
            raise RuntimeError(msg) from None
        started[spec.role] = process
        if spec.role == "back":
            backend_port = port
    return Running(config, started)


def measure(
    running: Running, wrk_bin: str, round_number: int, seconds: float, connections: int
) -> Sample:
    """Warm up, then one measured wrk run with CPU time read around it."""
    wrk.run(wrk_bin, running.url, seconds=1, connections=connections, cpu=CLIENT_CPU)
    before = {role: procs.cpu_seconds(p.pid) for role, p in running.processes.items()}
    result = wrk.run(wrk_bin, running.url, seconds=seconds, connections=connections, cpu=CLIENT_CPU)
    after = {role: procs.cpu_seconds(p.pid) for role, p in running.processes.items()}
    requests = max(_checked(running.config.name, result).requests, 1)
    return Sample(
        config=running.config.name,
        round=round_number,
        rps=result.rps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        requests=result.requests,
        errors=result.errors + result.non_2xx,
        cpu_us_per_request={
            role: round((after[role] - before[role]) / requests * 1e6, 1) for role in before
        },
        rss_mb={role: round(procs.rss_mb(p.pid), 1) for role, p in running.processes.items()},
    )


# The configuration whose memory is watched over a long run, and how many
# requests that run serves unless told otherwise (~70 s on this machine).
SOAK_CONFIG = "pair-default"
SOAK_REQUESTS = 100_000
# The long run is wrk runs back to back, each at most this long and sized
# from the rate so far, so each half ends near its count on any machine.
# Each run opens its connections afresh and drops them at its end with
# requests in flight, as a load balancer replacing its connections does:
# memory kept per connection grows the second half as memory kept per
# request does (about 400 connections in each half here).
SOAK_CHUNK_SECONDS = 2


def _checked(config: str, result: wrk.WrkResult) -> wrk.WrkResult:
    """``result``, or RuntimeError when more than 0.1 % of its requests failed."""
    if (result.errors + result.non_2xx) > max(result.requests, 1) * 0.001:
        msg = (
            f"{config}: {result.errors} socket errors and {result.non_2xx} "
            f"non-2xx answers in {result.requests} requests: the configuration is broken"
        )
        raise RuntimeError(msg)
    return result


def soak(running: Running, wrk_bin: str, requests: int, connections: int) -> dict[str, Any]:
    """RSS of each process after half of ``requests`` and after all of them.

    The processes are fresh: the counts are every request they served (wrk
    runs back to back, each checked for errors as a measured run is). A
    process whose memory is flat keeps the same RSS over the second half.
    Each half runs at least one wrk run, so a tiny ``requests`` still measures
    a second half (and serves more than asked). Each point also counts the
    connections wrk has opened so far, to the frontend: ``connections`` for
    each run (a reconnection after a socket error is not counted).
    """
    served, elapsed, opened = 0, 0.0, 0
    points: dict[str, dict[str, Any]] = {}
    for point, goal in (("middle", requests // 2), ("end", requests)):
        start_of_half = served
        while served < goal or served == start_of_half:
            # One second first, to learn the rate; wrk runs whole seconds.
            rate = served / elapsed if elapsed else 0.0
            seconds = min(SOAK_CHUNK_SECONDS, max(1, round((goal - served) / rate))) if rate else 1
            result = wrk.run(
                wrk_bin, running.url, seconds=seconds, connections=connections, cpu=CLIENT_CPU
            )
            served += _checked(running.config.name, result).requests
            elapsed += result.seconds
            opened += connections
        points[point] = {
            "requests": served,
            "connections_opened": opened,
            "rss_mb": {
                role: round(procs.rss_mb(p.pid), 1) for role, p in running.processes.items()
            },
        }
    return {"config": running.config.name, "connections": connections, **points}


@dataclass
class Sidecars:
    """The process standing in for a task's tracing sidecars (``apps`` ``sidecars``)."""

    process: procs.Process
    udp_port: int
    workdir: Path

    @property
    def otlp_endpoint(self) -> str:
        """The ADOT collector's OTLP/HTTP receiver (``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
        return f"http://127.0.0.1:{self.process.port}"

    @property
    def xray_daemon_address(self) -> str:
        """The X-Ray daemon's UDP port (``AWS_XRAY_DAEMON_ADDRESS``)."""
        return f"127.0.0.1:{self.udp_port}"

    def received(self) -> dict[str, int]:
        """Counts so far: OTLP exports and X-Ray datagrams taken, datagrams the kernel dropped.

        RuntimeError, with the end of its output, when the process has exited.
        """
        self.check_running()
        answer = httpx.get(f"{self.otlp_endpoint}/received", timeout=5)
        answer.raise_for_status()
        counts: dict[str, int] = answer.json()
        return counts

    def check_running(self) -> None:
        """RuntimeError, with the end of its output, when the process has exited."""
        if self.process.popen.poll() is not None:
            msg = f"the sidecars' stand-in exited; its output:\n{_tail(self.log)}"
            raise RuntimeError(msg)

    @property
    def log(self) -> Path:
        return self.workdir / "sidecars.log"


@contextmanager
def start_sidecars(workdir: Path) -> Iterator[Sidecars]:
    """The tracing sidecars' stand-in, on the client core, for as long as the block runs.

    In a task the X-Ray daemon reads every segment the SDK sends it and the
    collector answers every export; so does this process, as they would:
    what a sender pays depends on it (a datagram to a port nobody reads is
    answered by the kernel with an ICMP error instead of waking a reader).
    Its own CPU and memory are not counted (in a task the sidecars' CPU
    comes out of the same task CPU as the service's).
    """
    port, udp_port = _free_port(), _free_port(socket.SOCK_DGRAM)
    env = {
        **os.environ,
        "PORT": str(port),
        "XRAY_DAEMON_PORT": str(udp_port),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "sbcntrctl.bench.apps", "sidecars"]
    sidecars = Sidecars(
        procs.spawn("sidecars", command, port, env, workdir, CLIENT_CPU, workdir / "sidecars.log"),
        udp_port,
        workdir,
    )
    try:
        try:
            procs.wait_ready(sidecars.process, time.perf_counter())
        except RuntimeError as exc:
            msg = f"{exc}; its output:\n{_tail(sidecars.log)}"
            raise RuntimeError(msg) from None
        yield sidecars
    finally:
        sidecars.process.stop()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no output)"


def startup_and_stop(
    module: str,
    runs: int,
    workdir: Path,
    sidecars: Sidecars,
    settings: tuple[tuple[str, str], ...] = DEFAULT,
    python: str = sys.executable,
) -> dict[str, float]:
    """Median seconds from spawn to ready, and from SIGTERM to exit (no drain delay)."""
    ready, stop = [], []
    for n in range(runs):
        port = _free_port()
        spec = ProcessSpec("front", (python, "-m", module), settings)
        env = _process_env(spec, port, None, sidecars)
        env["DATABASE_URL"] = f"sqlite+aiosqlite:///{workdir}/startup-{module}-{n}.sqlite3"
        _migrate_if_backend(spec.command, env, workdir)
        began = time.perf_counter()
        log = workdir / f"startup-{module}.log"
        process = procs.spawn(module, list(spec.command), port, env, workdir, SERVER_CPU, log)
        ready.append(procs.wait_ready(process, began))
        stop.append(process.stop())
    return {
        "ready_s": round(statistics.median(ready), 3),
        "sigterm_to_exit_s": round(statistics.median(stop), 3),
    }


def metrics_record_cost(calls: int = 200_000) -> float:
    """CPU µs of one request's EMF work (``Metrics.record_request``), measured in process.

    The per-request cost is a few hundred nanoseconds, below what comparing two
    server configurations can resolve on this machine (their difference
    varies by several µs from round to round), so it is timed directly.
    """
    from servicekit.metrics import Metrics  # noqa: PLC0415 - the bench extra's

    metrics = Metrics("bench", "sbcntr/bench")
    routes = [f"/v1/items/{{item_id}}/{n}" for n in range(8)]
    began = time.process_time()
    for n in range(calls):
        metrics.record_request("GET", routes[n & 7], 200, 0.5 + (n % 997) * 0.37)
    return round((time.process_time() - began) / calls * 1e6, 3)


def otlp_encoding_cost(spans: int = 512, repeats: int = 20) -> dict[str, dict[str, float]]:
    """CPU µs to encode one finished span as OTLP protobuf, by encoder and attribute count.

    The OpenTelemetry path's export thread does this for every sampled span,
    with :mod:`servicekit.otlp_wire`; the exporter's own encoder
    (``encode_spans``, then serialization) is measured beside it on the same
    spans (finished by the SDK, with the service's resource). The X-Ray SDK
    path's counterpart is one orjson dump of a segment. Inner keys are the
    number of string attributes per span.
    """
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import (  # noqa: PLC0415
        encode_spans,
    )
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
        InMemorySpanExporter,
    )

    from servicekit.otlp_wire import encode_request  # noqa: PLC0415
    from servicekit.tracing_otel import service_resource  # noqa: PLC0415

    # The services' encoder, and the exporter's own (the reference its tests
    # hold the services' to).
    encoders: dict[str, Callable[[Sequence[ReadableSpan]], bytes]] = {
        "servicekit.otlp_wire": encode_request,
        "exporter": lambda batch: encode_spans(batch).SerializeToString(),
    }
    costs: dict[str, dict[str, float]] = {name: {} for name in encoders}
    for attributes in (0, 3, 7):
        kept = InMemorySpanExporter()
        provider = TracerProvider(resource=service_resource("bench", on_ecs=False))
        provider.add_span_processor(SimpleSpanProcessor(kept))
        tracer = provider.get_tracer("bench")
        for _ in range(spans):
            values = {f"attribute.{n}": f"value {n}" for n in range(attributes)}
            tracer.start_span("GET /v1/items", attributes=values).end()
        finished = kept.get_finished_spans()
        for name, encode in encoders.items():
            began = time.process_time()
            for _ in range(repeats):
                encode(finished)
            per_span = (time.process_time() - began) / (spans * repeats) * 1e6
            costs[name][str(attributes)] = round(per_span, 1)
        provider.shutdown()
    return costs


TRACING_BACKENDS = ("xray-sdk", "otel")


def tracing_cost(
    sidecars: Sidecars, sample_all_rules: Path, runs: int, requests: int
) -> dict[str, dict[str, float]]:
    """Median CPU µs per sampled request of each tracing backend alone, in process.

    :mod:`sbcntrctl.bench.tracingcpu` in a fresh process per run and backend
    (the backends alternate), on the server core; its spans and segments go
    to ``sidecars``, on the client core. Keyed by figure (``cpu_us``: the
    whole process; ``request_path_us``: the requests' own thread), then by
    backend.
    """
    figures = ("cpu_us", "request_path_us")
    measured: dict[str, dict[str, list[float]]] = {
        figure: {backend: [] for backend in TRACING_BACKENDS} for figure in figures
    }
    for _ in range(runs):
        for backend in TRACING_BACKENDS:
            spec = ProcessSpec("front", (), _env(XRAY_SAMPLING_RULES=str(sample_all_rules)))
            env = _process_env(spec, _free_port(), None, sidecars)
            command = [sys.executable, "-m", "sbcntrctl.bench.tracingcpu", backend]
            if shutil.which("taskset"):
                command = ["taskset", "-c", str(SERVER_CPU), *command]
            done = subprocess.run(
                [*command, str(requests)], env=env, capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                msg = f"tracing CPU of {backend} failed:\n{done.stderr[-3000:]}"
                raise RuntimeError(msg)
            line = json.loads(done.stdout.splitlines()[-1])
            for figure in figures:
                measured[figure][backend].append(line[figure])
    return {
        figure: {backend: round(statistics.median(v), 1) for backend, v in by_backend.items()}
        for figure, by_backend in measured.items()
    }


def compile_sources(root: Path) -> None:
    """Compile the services' own modules, as the images do at build time."""
    sources = [str(root / p) for p in ("servicekit/src", "backend/src", "frontend/src")]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *sources], check=True, capture_output=True
    )


def sample_all_rules_file(root: Path, directory: Path) -> Path:
    rules: dict[str, Any] = json.loads(
        (root / "servicekit/src/servicekit/sampling-rules.json").read_text()
    )
    rules["default"] = {"fixed_target": 0, "rate": 1.0}
    path = directory / "sample-all.json"
    path.write_text(json.dumps(rules))
    return path


@dataclass
class RunOptions:
    root: Path
    quick: bool
    rounds: int
    seconds: float
    connections: int
    startup_runs: int
    only: tuple[str, ...] = ()
    # Runs per backend of the in-process tracing CPU figure (0: not measured).
    tracing_runs: int = 0
    tracing_requests: int = 20_000
    # Requests of the long run on SOAK_CONFIG (0: no long run).
    soak_requests: int = 0


def run(options: RunOptions) -> dict[str, Any]:
    """The whole benchmark: start everything, interleave rounds, stop everything."""
    wrk_bin = wrk.ensure_wrk()
    compile_sources(options.root)
    pythons = environments.service_pythons(options.root)
    with (
        tempfile.TemporaryDirectory(prefix="sbcntr-bench-") as tmp,
        start_sidecars(Path(tmp)) as sidecars,
    ):
        workdir = Path(tmp)
        configs = configurations(
            sample_all_rules_file(options.root, workdir), options.quick, pythons
        )
        if options.only:
            configs = [c for c in configs if c.name in options.only]
        running: list[Running] = []
        samples: list[Sample] = []
        # What the sidecars' stand-in took while each configuration was driven.
        received: dict[str, dict[str, int]] = {c.name: {} for c in configs}
        try:
            running.extend(start(config, workdir, sidecars) for config in configs)
            for number in range(options.rounds):
                # Rotate the order each round so drift in the machine's load
                # does not always fall on the same configuration.
                shift = number % len(running)
                for item in running[shift:] + running[:shift]:
                    before = sidecars.received()
                    samples.append(
                        measure(item, wrk_bin, number, options.seconds, options.connections)
                    )
                    after = sidecars.received()
                    taken = received[item.config.name]
                    for key, count in after.items():
                        taken[key] = taken.get(key, 0) + count - before[key]
        finally:
            exits = {
                f"{item.config.name}/{role}": p.stop()
                for item in running
                for role, p in item.processes.items()
            }
        long_run = (
            _soak_run(options, wrk_bin, workdir, pythons, sidecars)
            if options.soak_requests
            else None
        )
        tracing_cpu = (
            tracing_cost(
                sidecars,
                sample_all_rules_file(options.root, workdir),
                options.tracing_runs,
                options.tracing_requests,
            )
            if options.tracing_runs
            else None
        )
        startup = {
            module: startup_and_stop(
                module, options.startup_runs, workdir, sidecars, python=pythons[module]
            )
            for module in ("backend", "frontend")
        } | {
            f"{module} (otel)": startup_and_stop(
                module, options.startup_runs, workdir, sidecars, DEFAULT + OTEL, pythons[module]
            )
            for module in ("backend", "frontend")
        }
    return {
        "configs": [{"name": c.name, "description": c.description} for c in configs],
        "samples": [vars(s) for s in samples],
        # By configuration, what the sidecars' stand-in took while it was driven
        # (warm-ups included): X-Ray datagrams, the kernel's drops, and OTLP
        # exports, which also come from the idle OpenTelemetry configurations'
        # export threads.
        "sidecars_received": received,
        "startup": startup,
        "metrics_record_us": metrics_record_cost(),
        "otlp_encoding_us": otlp_encoding_cost(),
        "exit_after_load_s": {k: round(v, 3) for k, v in exits.items()},
        "soak": long_run,
        "tracing_cpu_us": tracing_cpu["cpu_us"] if tracing_cpu else None,
        "tracing_request_path_us": tracing_cpu["request_path_us"] if tracing_cpu else None,
    }


def _soak_run(
    options: RunOptions,
    wrk_bin: str,
    workdir: Path,
    pythons: Mapping[str, str],
    sidecars: Sidecars,
) -> dict[str, Any]:
    """The long run: SOAK_CONFIG started afresh once the rounds' processes have stopped."""
    config = next(
        c
        for c in configurations(sample_all_rules_file(options.root, workdir), False, pythons)
        if c.name == SOAK_CONFIG
    )
    running = start(config, workdir, sidecars)
    try:
        return soak(running, wrk_bin, options.soak_requests, options.connections)
    finally:
        for process in running.processes.values():
            process.stop()
