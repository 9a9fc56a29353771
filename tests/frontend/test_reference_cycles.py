"""Serving a request leaves no reference cycles for the garbage collector.

The services raise the young-generation threshold of the collector
(``servicekit.app``) because a request's objects are freed by reference
counting alone. These tests keep it that way for the objects of a backend
call (aiohttp's response and connection) and of its trace (the
SDK's segment and subsegments), on pages and API routes.

The frontend runs on a real uvicorn server, configured as the service runs
it (:func:`servicekit.runner.build_config`), in a thread of the test process
(the collector is per process) and is called with the standard library's
client; Starlette's TestClient is not used, as its template debug extension
itself ties each page's request into a cycle.
"""

from __future__ import annotations

import gc
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from frontend.app import create_app
from frontend.settings import FrontendSettings
from servicekit.runner import build_config
from tests.support import (
    SegmentCollector,
    Service,
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
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(5):
            get_all(frontend_url)
        gc.collect()
        cyclic = Counter(
            f"{type(obj).__module__}.{type(obj).__qualname__}"
            for obj in gc.garbage
            if type(obj).__module__.startswith(WATCHED_MODULES)
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert cyclic == {}
