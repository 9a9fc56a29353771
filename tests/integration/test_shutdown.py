"""Graceful shutdown on real signals, under real load, and the frontend's resilience.

The load client stands in for a load balancer: it polls ``/readyz`` and stops
sending new requests a while after the service reports it is draining, as an
ALB does once deregistration completes. The service must keep accepting new
requests during that lag (the drain delay), and every request sent must
complete with its normal status.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import StartService
from tests.integration.conftest import start_stack
from tests.support import Service, sqlite_url

# They measure drain and grace periods, with time bounds: dev.py test runs them alone.
# Left out by dev.py test --quick (integration: test_services runs both services).
pytestmark = [pytest.mark.serial, pytest.mark.slow]

DRAIN = 1.5
GRACE = 10.0
# How long the stand-in load balancer keeps sending after readiness fails.
BALANCER_LAG = 1.0


@dataclass
class LoadResult:
    statuses: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    readyz_503_seen: bool = False
    signal_sent_at: float = 0.0


async def load_through_sigterm(
    service: Service, path: str, workers: int = 20, before_signal: float = 1.0
) -> LoadResult:
    """Send continuous load, SIGTERM the service, stop sending once it reports draining."""
    result = LoadResult()
    stop_sending = asyncio.Event()
    limits = httpx.Limits(max_connections=workers + 2)
    async with httpx.AsyncClient(base_url=service.url, timeout=30, limits=limits) as client:

        async def worker() -> None:
            while not stop_sending.is_set():
                try:
                    response = await client.get(path)
                    result.statuses.append(response.status_code)
                except httpx.HTTPError as exc:
                    result.failures.append(f"{type(exc).__name__}: {exc}")

        async def balancer() -> None:
            await asyncio.sleep(before_signal)
            service.send(signal.SIGTERM)
            result.signal_sent_at = time.monotonic()
            while True:
                response = await client.get("/readyz")
                if response.status_code == 503:
                    result.readyz_503_seen = True
                    await asyncio.sleep(BALANCER_LAG)
                    stop_sending.set()
                    return
                await asyncio.sleep(0.05)

        await asyncio.gather(balancer(), *(worker() for _ in range(workers)))
    return result


def shutdown_line(service: Service) -> dict[str, object]:
    lines = [r for r in service.log_lines() if r["logger"] == "servicekit.runner"]
    (line,) = [r for r in lines if str(r["event"]).startswith("shutdown")]
    return line


def test_backend_sigterm_under_load_loses_nothing(start: StartService, tmp_path: Path) -> None:
    backend = start(
        "backend",
        env={
            "DATABASE_URL": sqlite_url(tmp_path / "b.sqlite3"),
            "SHUTDOWN_DRAIN_SECONDS": str(DRAIN),
            "SHUTDOWN_GRACE_SECONDS": str(GRACE),
            "FAULT_INJECTION_ENABLED": "true",
            "FAULT_LATENCY_MS": "400",
        },
    )
    result = asyncio.run(load_through_sigterm(backend, "/v1/items"))
    status = backend.wait(timeout=DRAIN + GRACE + 5)
    elapsed = time.monotonic() - result.signal_sent_at

    assert result.failures == []
    assert result.statuses
    assert set(result.statuses) == {200}
    assert result.readyz_503_seen
    assert status == 0
    assert elapsed < DRAIN + GRACE
    line = shutdown_line(backend)
    assert line["event"] == "shutdown complete"
    assert line["cut_short"] == 0
    assert line["signal"] == "SIGTERM"
    assert isinstance(line["drained"], int)
    assert line["drained"] >= 1
    # Every request the client saw completed has its access line.
    assert len([r for r in backend.access_lines() if r["path"] == "/v1/items"]) == len(
        result.statuses
    )


def test_frontend_sigterm_under_load_loses_nothing(start: StartService, tmp_path: Path) -> None:
    stack = start_stack(
        start,
        tmp_path,
        backend_env={"FAULT_INJECTION_ENABLED": "true", "FAULT_LATENCY_MS": "300"},
        frontend_env={
            "SHUTDOWN_DRAIN_SECONDS": str(DRAIN),
            "SHUTDOWN_GRACE_SECONDS": str(GRACE),
        },
    )
    result = asyncio.run(load_through_sigterm(stack.frontend, "/items"))
    status = stack.frontend.wait(timeout=DRAIN + GRACE + 5)

    assert result.failures == []
    assert set(result.statuses) == {200}
    assert result.readyz_503_seen
    assert status == 0
    line = shutdown_line(stack.frontend)
    assert line["event"] == "shutdown complete"
    assert line["cut_short"] == 0
    closing = [r["event"] for r in stack.frontend.log_lines()]
    assert "backend client closed" in closing
    assert stack.backend.process.poll() is None


def test_readyz_fails_at_once_and_healthz_stays_up_while_draining(start: StartService) -> None:
    frontend = start("frontend", env={"SHUTDOWN_DRAIN_SECONDS": "3"})
    frontend.send(signal.SIGTERM)
    time.sleep(0.3)
    assert httpx.get(f"{frontend.url}/readyz").status_code == 503
    assert httpx.get(f"{frontend.url}/readyz").json()["checks"] == {"lifecycle": "draining"}
    assert httpx.get(f"{frontend.url}/healthz").status_code == 200
    assert frontend.wait(timeout=10) == 0


def test_request_longer_than_grace_is_cut_and_the_process_exits(
    start: StartService, tmp_path: Path
) -> None:
    backend = start(
        "backend",
        env={
            "DATABASE_URL": sqlite_url(tmp_path / "b.sqlite3"),
            "SHUTDOWN_DRAIN_SECONDS": "0.5",
            "SHUTDOWN_GRACE_SECONDS": "2",
            "FAULT_INJECTION_ENABLED": "true",
            "FAULT_LATENCY_MS": "30000",
        },
    )

    async def scenario() -> tuple[str, float]:
        async with httpx.AsyncClient(timeout=40) as client:
            request = asyncio.create_task(client.get(f"{backend.url}/v1/helloworld"))
            await asyncio.sleep(0.5)
            backend.send(signal.SIGTERM)
            sent = time.monotonic()
            try:
                response = await request
                outcome = str(response.status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            await asyncio.to_thread(backend.wait, 10)
            return outcome, time.monotonic() - sent

    outcome, elapsed = asyncio.run(scenario())
    assert backend.process.returncode == 1
    assert elapsed < 0.5 + 2 + 2
    assert outcome != "200"
    line = shutdown_line(backend)
    assert line["event"] == "shutdown after grace timeout"
    assert line["cut_short"] == 1
    (cut,) = [r for r in backend.access_lines() if r["path"] == "/v1/helloworld"]
    assert cut["cancelled"] is True
    assert cut["level"] == "error"


def test_second_sigterm_ends_the_process_promptly(start: StartService, tmp_path: Path) -> None:
    backend = start(
        "backend",
        env={
            "DATABASE_URL": sqlite_url(tmp_path / "b.sqlite3"),
            "SHUTDOWN_DRAIN_SECONDS": "5",
            "FAULT_INJECTION_ENABLED": "true",
            "FAULT_LATENCY_MS": "30000",
        },
    )

    async def scenario() -> float:
        async with httpx.AsyncClient(timeout=40) as client:
            request = asyncio.create_task(client.get(f"{backend.url}/v1/helloworld"))
            await asyncio.sleep(0.5)
            backend.send(signal.SIGTERM)
            await asyncio.sleep(0.5)
            backend.send(signal.SIGTERM)
            sent = time.monotonic()
            await asyncio.to_thread(backend.wait, 10)
            request.cancel()
            return time.monotonic() - sent

    elapsed = asyncio.run(scenario())
    assert elapsed < 2
    assert backend.process.returncode == 1
    line = shutdown_line(backend)
    assert line["event"] == "shutdown forced"
    assert line["forced_by"] == "SIGTERM"
    assert line["cut_short"] == 1


def test_backend_killed_under_load_then_restarted(start: StartService, tmp_path: Path) -> None:
    db = sqlite_url(tmp_path / "k.sqlite3")
    stack = start_stack(start, tmp_path, backend_env={"DATABASE_URL": db})

    async def load(seconds: float, kill_after_first_page: bool = False) -> list[tuple[int, float]]:
        """Ten clients loading /items; optionally the backend killed once pages are served."""
        results: list[tuple[int, float]] = []
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(base_url=stack.frontend.url, timeout=30) as client:

            async def worker() -> None:
                while time.monotonic() < deadline:
                    begun = time.monotonic()
                    response = await client.get("/items")
                    results.append((response.status_code, time.monotonic() - begun))

            async def killer() -> None:
                nonlocal deadline
                # On a busy machine the first pages can take longer than any
                # fixed delay: kill once one was served, then load the dead backend.
                while not any(status == 200 for status, _ in results):
                    await asyncio.sleep(0.05)
                stack.backend.send(signal.SIGKILL)
                deadline = time.monotonic() + 1.5

            tasks = [worker() for _ in range(10)]
            if kill_after_first_page:
                deadline += 30  # ends 1.5 s after the kill
                tasks.append(killer())
            await asyncio.gather(*tasks)
        return results

    results = asyncio.run(load(0, kill_after_first_page=True))
    statuses = {status for status, _ in results}
    assert 200 in statuses
    assert statuses & {502, 503}
    assert statuses <= {200, 502, 503}
    assert max(duration for _, duration in results) < 5  # BACKEND_TIMEOUT_SECONDS
    warnings = [r for r in stack.frontend.log_lines() if r["event"] == "backend call failed"]
    assert warnings
    assert all(r["level"] == "warning" and r["cause"] for r in warnings)

    start("backend", port=stack.backend.port, env={"DATABASE_URL": db})
    after = asyncio.run(load(0.5))
    assert {status for status, _ in after} == {200}
    assert stack.frontend.process.poll() is None


def test_shutdown_line_is_json_with_the_drain_figures(start: StartService) -> None:
    frontend = start("frontend", env={"SHUTDOWN_DRAIN_SECONDS": "0.2"})
    httpx.get(f"{frontend.url}/healthz")
    frontend.send(signal.SIGINT)
    assert frontend.wait(timeout=10) == 0
    raw = [json.loads(x) for x in frontend.stdout_path.read_text().splitlines()]
    (line,) = [r for r in raw if r["event"] == "shutdown complete"]
    assert line["signal"] == "SIGINT"
    assert {"drained", "in_flight_at_signal", "cut_short", "duration_ms"} <= line.keys()
    assert 200 <= line["duration_ms"] < 5000
