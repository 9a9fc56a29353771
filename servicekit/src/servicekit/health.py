"""Liveness, readiness and the drain state of one service process.

``/healthz`` answers 200 while the process can serve at all and touches
nothing external: a failing dependency must not make the orchestrator kill a
healthy task. ``/readyz`` answers 200 only when every readiness check passes
and the process is not draining, so load balancers and compose health checks
send traffic only where it can be served.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

ReadinessCheck = Callable[[], Awaitable[None]]
"""An awaitable that returns when a dependency answers and raises when not."""

READINESS_CHECK_TIMEOUT_SECONDS = 2.0
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


@dataclass
class Lifecycle:
    """Request accounting and drain state, shared by the middleware and the runner."""

    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    in_flight: int = 0
    completed: int = 0
    cancelled: int = 0
    drain_signal: str | None = None
    drain_started: float | None = None
    in_flight_at_drain: int = 0
    completed_at_drain: int = 0

    @property
    def draining(self) -> bool:
        return self.drain_started is not None

    def begin_drain(self, signal_name: str) -> None:
        """Fail readiness from now on; remember where the drain started."""
        if self.drain_started is not None:
            return
        self.drain_signal = signal_name
        self.drain_started = time.monotonic()
        self.in_flight_at_drain = self.in_flight
        self.completed_at_drain = self.completed

    def request_started(self) -> None:
        self.in_flight += 1

    def request_finished(self, *, cancelled: bool = False) -> None:
        self.in_flight -= 1
        if cancelled:
            self.cancelled += 1
        else:
            self.completed += 1

    @property
    def drained(self) -> int:
        """Requests completed since the drain began."""
        return self.completed - self.completed_at_drain

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Run every check concurrently; return overall readiness and per-check results."""
        if self.draining:
            return False, {"lifecycle": "draining"}
        names = list(self.checks)
        results = await asyncio.gather(
            *(_run_check(self.checks[name]) for name in names), return_exceptions=False
        )
        report = dict(zip(names, results, strict=True))
        return all(result == "ok" for result in results), report


async def _run_check(check: ReadinessCheck) -> str:
    try:
        async with asyncio.timeout(READINESS_CHECK_TIMEOUT_SECONDS):
            await check()
    except TimeoutError:
        return f"timed out after {READINESS_CHECK_TIMEOUT_SECONDS:g}s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    return "ok"


def add_readiness_check(app: FastAPI, name: str, check: ReadinessCheck) -> None:
    """Make ``/readyz`` of ``app`` wait for ``check`` under ``name``."""
    lifecycle: Lifecycle = app.state.lifecycle
    lifecycle.checks[name] = check


def health_router() -> APIRouter:
    """``GET /healthz`` and ``GET /readyz``, reading ``app.state.lifecycle``."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_class=JSONResponse)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @router.get("/readyz", response_class=JSONResponse)
    async def readyz(request: Request) -> JSONResponse:
        lifecycle: Lifecycle = request.app.state.lifecycle
        ready, checks = await lifecycle.readiness()
        if ready:
            return JSONResponse({"status": "ok", "checks": checks})
        return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)

    return router
