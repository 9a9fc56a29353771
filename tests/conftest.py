"""Fixtures shared by every test package."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import Service, start_service

# The headless-browser fixture (``browser``), for any test that looks at pages.
pytest_plugins = ["tests.browser"]

StartService = Callable[..., Service]


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
