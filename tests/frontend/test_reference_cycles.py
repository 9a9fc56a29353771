"""Serving a request leaves no reference cycles for the garbage collector.

The services raise the young-generation threshold of the collector
(``servicekit.app``) because a request's objects are freed by reference
counting alone. These tests keep it that way for the objects of a backend
call (aiohttp's response and connection) and of its trace (the
SDK's segment and subsegments), on pages and API routes.

A backend call that fails (nothing listens, or nothing answers in time)
must leave nothing either: in an outage every call fails.

The frontend runs on a real uvicorn server, configured as the service runs
it (:func:`servicekit.runner.build_config`), in a thread of the test process
(the collector is per process) and is called with the standard library's
client; Starlette's TestClient is not used, as its template debug extension
itself ties each page's request into a cycle.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from frontend.app import create_app
from frontend.settings import FrontendSettings
from servicekit.logs import configure_logging
from servicekit.runner import build_config
from tests.support import (
    SegmentCollector,
    Service,
    cycles_left,
    free_port,
    rules_file,
    sample_all_rules,
    server_in_thread,
)

WATCHED_MODULES = (
    "aiohttp.",
    "yarl.",
    "aws_xray_sdk.",
    "frontend.",
    "servicekit.",
)
PATHS = ["/api/helloworld", "/api/items", "/", "/items", "/notifications"]


def serve_in_thread(settings: FrontendSettings) -> Iterator[str]:
    with server_in_thread(build_config(create_app(settings), settings)):
        yield f"http://127.0.0.1:{settings.port}"


@pytest.fixture(params=[True, False], ids=["traced", "untraced"])
def frontend_url(request: Any, backend: Service, tmp_path: Path) -> Iterator[str]:
    rules = rules_file(tmp_path, sample_all_rules(), "rules.json")
    with SegmentCollector() as collector:
        settings = FrontendSettings(
            port=free_port(),
            backend_url=backend.url,
            tracing_enabled=request.param,
            xray_daemon_address=collector.address,
            xray_sampling_rules=rules,
            log_level="WARNING",
        )
        yield from serve_in_thread(settings)


def get_all(base_url: str) -> None:
    for path in PATHS:
        with urllib.request.urlopen(base_url + path, timeout=5) as response:
            assert response.status == 200, path


def test_requests_leave_no_cycles(frontend_url: str) -> None:
    get_all(frontend_url)  # warm up: pools and caches filled once
    with cycles_left(WATCHED_MODULES) as cyclic:
        for _ in range(5):
            get_all(frontend_url)
    assert cyclic == {}


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return error.code


@pytest.fixture(params=["refused", "no_answer"])
def failing_backend(request: Any) -> Iterator[tuple[str, int]]:
    """A backend address and the status the frontend answers for it."""
    if request.param == "refused":
        yield f"http://127.0.0.1:{free_port()}", 503
        return
    # Listening, so connections are made, but never accepting: no answer comes.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", 504


def test_failed_backend_calls_leave_no_cycles(failing_backend: tuple[str, int]) -> None:
    backend_url, status = failing_backend
    # Error lines are not rendered: what a failure leaves must not depend on it.
    configure_logging("frontend", "CRITICAL")
    settings = FrontendSettings(
        port=free_port(),
        backend_url=backend_url,
        backend_connect_timeout_seconds=0.2,
        backend_timeout_seconds=0.3,
        tracing_enabled=False,
        log_level="CRITICAL",
    )
    base_url = f"http://127.0.0.1:{settings.port}"
    with server_in_thread(build_config(create_app(settings), settings)):
        assert [status_of(base_url + path) for path in PATHS] == [status] * len(PATHS)
        with cycles_left(WATCHED_MODULES) as cyclic:
            for path in PATHS:
                assert status_of(base_url + path) == status, path
    assert cyclic == {}
