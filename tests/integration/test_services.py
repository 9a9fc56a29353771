"""Both real services as processes on loopback ports, driven over HTTP."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import StartService
from tests.integration.conftest import Stack
from tests.support import sqlite_url


@pytest.mark.quick
def test_page_request_reaches_the_backend(stack: Stack) -> None:
    response = httpx.get(f"{stack.frontend.url}/", headers={"X-Request-Id": "it-home-1"})
    assert response.status_code == 200
    assert "Hello world" in response.text
    assert response.headers["x-request-id"] == "it-home-1"
    backend_paths = sorted(line["path"] for line in stack.backend.access_lines_for("it-home-1", 2))
    assert backend_paths == ["/v1/helloworld", "/v1/notifications/count"]


def test_item_created_through_frontend_shows_on_items_page(stack: Stack) -> None:
    with httpx.Client(base_url=stack.frontend.url) as client:
        response = client.post("/items", data={"title": "made through the frontend"})
        assert response.status_code == 303
        page = client.get("/items")
    assert page.status_code == 200
    assert "made through the frontend" in page.text
    items = httpx.get(f"{stack.backend.url}/v1/items").json()["data"]
    assert items[0]["title"] == "made through the frontend"


@pytest.mark.serial  # a time bound
def test_backend_down_then_restarted(start: StartService, tmp_path: Path, stack: Stack) -> None:
    assert httpx.get(f"{stack.frontend.url}/items").status_code == 200
    assert stack.backend.stop(signal.SIGTERM) == 0

    start_time = time.perf_counter()
    response = httpx.get(f"{stack.frontend.url}/items", timeout=10)
    assert response.status_code in (502, 503)
    assert time.perf_counter() - start_time < 5  # the frontend's BACKEND_TIMEOUT_SECONDS
    assert "unavailable" in response.text

    # Same port, same database: the frontend recovers without a restart.
    start(
        "backend",
        port=stack.backend.port,
        env={
            "DATABASE_URL": sqlite_url(tmp_path / "stack.sqlite3"),
            "AWS_XRAY_SDK_ENABLED": "false",
        },
    )
    assert httpx.get(f"{stack.frontend.url}/items").status_code == 200
    assert stack.frontend.process.poll() is None
