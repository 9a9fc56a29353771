"""Fixtures shared by every test package."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servicekit import logs
from tests.support import Service, start_service

# The headless-browser fixture (``browser``), for any test that looks at pages.
pytest_plugins = ["tests.browser"]

StartService = Callable[..., Service]

# Fixtures that start processes of their own for each test (services, a browser,
# a moto server, Fluent Bit, dev.py up). A test using one, even through another
# fixture, is marked slow, so dev.py test --quick leaves it out unless it is marked
# quick: the one real-process test each area keeps in the inner loop.
PROCESS_FIXTURES = frozenset(
    {
        "start",
        "backend",
        "stack",
        "browser",
        "dev_up",
        "emulator",
        "sample",
        "moto_server",
        "steady_server",
        "stuck_server",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _log_lines_out_by_the_next_iteration(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In this process, log lines wait for the next loop iteration only, not the delay.

    In-process tests read what an app wrote as soon as it has answered, and
    end their event loops within milliseconds. The delay itself is tested in
    processes of their own (tests/servicekit/test_log_writes.py), as are the
    services (``start``). What still waits when a test ends is written then.
    """
    monkeypatch.setattr(logs, "FLUSH_DELAY_SECONDS", 0)
    yield
    logs.flush_lines()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[StartService]:
    """Start real service processes in ``tmp_path``; every one is stopped after the test."""
    started: list[Service] = []

    def _start(name: str, **kwargs: object) -> Service:
        kwargs.setdefault("run_number", len(started))
        service = start_service(name, tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(service)
        return service

    yield _start
    for service in started:
        if service.process.poll() is None:
            service.stop(signal.SIGKILL, timeout=10)
