"""The server runner both ``python -m <service>`` entry points use.

:func:`serve` reads the settings (a bad variable is one clear JSON line and
exit status 2), configures logging, builds the app and runs it on uvicorn with
graceful shutdown:

1. On the first SIGTERM or SIGINT, ``/readyz`` answers 503 at once and the
   server keeps serving for ``SHUTDOWN_DRAIN_SECONDS``, so that a load balancer
   can finish deregistering the task.
2. It then closes its listeners and lets in-flight requests finish for at most
   ``SHUTDOWN_GRACE_SECONDS``; requests still running then are cancelled.
3. The service's lifespan closes its clients, one ``shutdown`` line records
   what was drained and how long it took, and the process exits 0 (1 when a
   request was cut short).

A second signal ends the process promptly. The signal must reach this process
itself: containers start it in exec form (or with an init that forwards it).

What concerns the whole process is done here, once, not by the application
factory: the task identity is read from the ECS metadata endpoint before the
app is built, and once the app has started, the objects made at start-up are
frozen out of the garbage collector and young collections made rarer
(:func:`tune_garbage_collector`).
"""

from __future__ import annotations

import gc
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol, TypeVar

import uvicorn
from fastapi import FastAPI
from pydantic import AliasChoices, ValidationError

from servicekit.edge import EdgeLimits, limited_protocol
from servicekit.health import Lifecycle
from servicekit.identity import TaskIdentity, task_identity
from servicekit.logs import configure_logging, get_logger
from servicekit.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)
S_contra = TypeVar("S_contra", bound=ServiceSettings, contravariant=True)

log = get_logger("servicekit.runner")

YOUNG_COLLECTION_THRESHOLD = 10_000


class AppFactory(Protocol[S_contra]):
    """A service's ``create_app``: the settings and the task identity to the application."""

    def __call__(self, settings: S_contra, identity: TaskIdentity | None = None) -> FastAPI: ...


def tune_garbage_collector() -> None:
    """Freeze what start-up made and make young collections rarer, for this process.

    Objects made at start-up live for the whole process; moving them out of
    the collector's generations keeps full collections (and p99) short.
    Requests and connections leave no reference cycles behind (the services
    break the ones their libraries make; ``tests/frontend/test_reference_cycles.py``
    and ``tests/servicekit/test_edge_connections.py`` hold them to it), so a
    young collection finds no garbage: it only rescans what the requests in
    flight hold. A cycle would change that: its objects would be the only
    allocations that count, so young collections would come rarely, and the
    cycles of a connection that outlived one would wait in an older
    generation: the middle one is collected every tenth young collection,
    the oldest only once the objects moved into it since its last
    collection pass a quarter of those that collection kept (the first
    time, everything start-up left, frozen or not). Memory would grow with
    the connections served (docs/performance.md, round 6).

    Running young collections every 10,000 net allocations instead of 700
    cut the frontend's CPU per request by 3-5%.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])


class DrainingServer(uvicorn.Server):
    """uvicorn server that drains before it stops and reports how the stop went."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, drain_seconds: float) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.drain_seconds = drain_seconds
        self.stop_at: float | None = None
        self.forced_by: str | None = None
        self._announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs as a signal handler: set flags only, log from on_tick.
        name = signal.Signals(sig).name
        if self.lifecycle.draining:
            self.forced_by = name
            self.force_exit = True
            self.should_exit = True
            return
        self.lifecycle.begin_drain(name)
        self.stop_at = time.monotonic() + self.drain_seconds

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # The application's lifespan has run when this returns: its objects are made.
        await super().startup(sockets=sockets)
        if not self.should_exit:
            tune_garbage_collector()

    async def on_tick(self, counter: int) -> bool:
        if self.stop_at is not None:
            if not self._announced:
                self._announced = True
                log.info(
                    "draining",
                    signal=self.lifecycle.drain_signal,
                    drain_seconds=self.drain_seconds,
                    in_flight=self.lifecycle.in_flight,
                )
            if time.monotonic() >= self.stop_at:
                self.should_exit = True
        return await super().on_tick(counter)


def build_config(app: FastAPI, settings: ServiceSettings) -> uvicorn.Config:
    """The uvicorn configuration of a service (logging is ours, not uvicorn's).

    HTTP/1.1 through :class:`servicekit.edge.LimitedHttpProtocol` with the
    settings' limits; no WebSocket support (neither service has such a route).
    """
    limits = EdgeLimits(
        max_body_bytes=settings.max_request_body_bytes,
        max_header_bytes=settings.max_request_header_bytes,
        max_headers=settings.max_request_headers,
        header_timeout=settings.http_header_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds,
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=limited_protocol(limits, app.state.metrics),
        ws="none",
        log_config=None,
        access_log=False,
        server_header=False,
        # The client's address and scheme are read by TRUSTED_PROXIES alone
        # (servicekit.asgi, servicekit.browser). uvicorn's own handling would
        # trust any peer on 127.0.0.1 and rewrite both before the application.
        proxy_headers=False,
        timeout_keep_alive=settings.http_keep_alive_seconds,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_seconds)),
        lifespan="on",
    )


def load_settings_or_report(load_settings: Callable[[], S]) -> S | None:
    """The settings, or ``None`` after one ``invalid configuration`` line naming each variable.

    Every command of a service reads its settings this way and exits 2 on ``None``.
    """
    try:
        return load_settings()
    except ValidationError as exc:
        configure_logging("config", "INFO")
        log.critical(
            "invalid configuration",
            errors=[
                {"variable": _variable_of(err, load_settings), "message": err["msg"]}
                for err in exc.errors()
            ],
        )
        return None


def serve(load_settings: Callable[[], S], create_app: AppFactory[S]) -> int:
    """Run a service until it is stopped; return the process exit status."""
    settings = load_settings_or_report(load_settings)
    if settings is None:
        return 2
    configure_logging(settings.service_name, settings.log_level)
    app = create_app(settings, task_identity(settings.ecs_container_metadata_uri_v4))
    lifecycle: Lifecycle = app.state.lifecycle
    server = DrainingServer(build_config(app, settings), lifecycle, settings.shutdown_drain_seconds)
    server.run()
    return _report_shutdown(server, lifecycle)


def _variable_of(error: Any, load_settings: Callable[[], ServiceSettings]) -> str:
    """The environment variable an error is about.

    A check across fields has no location: it is the first variable its
    message names.
    """
    if error["loc"]:
        return ".".join(str(part) for part in error["loc"]).upper()
    fields = getattr(load_settings, "model_fields", {})
    names: set[str] = set()
    for name, field in fields.items():
        names.add(name.upper())
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        names.update(choice.upper() for choice in choices if isinstance(choice, str))
    message = str(error["msg"])
    found = [
        (match.start(), name)
        for name in names
        if (match := re.search(rf"\b{re.escape(name)}\b", message)) is not None
    ]
    return min(found)[1] if found else ""


def _report_shutdown(server: DrainingServer, lifecycle: Lifecycle) -> int:
    if lifecycle.drain_started is None:
        # The server stopped without a signal: start-up failed.
        log.error("server stopped without a stop signal")
        return 3
    cut_short = lifecycle.cancelled + lifecycle.in_flight
    fields = {
        "signal": lifecycle.drain_signal,
        "drained": lifecycle.drained,
        "in_flight_at_signal": lifecycle.in_flight_at_drain,
        "cut_short": cut_short,
        "duration_ms": round((time.monotonic() - lifecycle.drain_started) * 1000, 1),
    }
    if server.forced_by is not None:
        log.warning("shutdown forced", forced_by=server.forced_by, **fields)
    elif cut_short:
        log.warning("shutdown after grace timeout", **fields)
    else:
        log.info("shutdown complete", **fields)
    sys.stdout.flush()
    return 1 if cut_short else 0
