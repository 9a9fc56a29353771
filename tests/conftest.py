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
def _log_lines_out_by_the_end_of_the_test() -> Iterator[None]:
    """What still waits to be written when a test ends is written then.

    A test whose event loop stops before the loop's next turn would leave its
    lines waiting for the next test's first line. The writes themselves are
    tested in processes of their own (tests/servicekit/test_log_writes.py).
    """
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
