"""The frontend when the backend is down, slow or failing, and its retry rules."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from frontend.backend_client import BackendClient, BackendUnavailable, create_session
from frontend.settings import FrontendSettings
from tests.frontend.conftest import MakeFrontend
from tests.support import ScriptedBackend, free_port, sqlite_url, start_service

OK_HELLO = (200, b'{"data": "Hello world"}')


@pytest.mark.serial  # a time bound
def test_unreachable_backend_is_503_page(make_frontend: MakeFrontend) -> None:
    client = make_frontend(backend_url=f"http://127.0.0.1:{free_port()}")
    start = time.perf_counter()
    response = client.get("/")
    assert time.perf_counter() - start < 2
    assert response.status_code == 503
    assert "The backend is unavailable" in response.text
    assert "Traceback" not in response.text


@pytest.mark.serial  # a time bound
def test_slow_backend_is_504_within_the_timeout(make_frontend: MakeFrontend) -> None:
    with ScriptedBackend(["hang"]) as backend:
        client = make_frontend(
            backend_url=backend.url,
            backend_timeout_seconds=0.5,
            backend_connect_timeout_seconds=0.5,
        )
        start = time.perf_counter()
        response = client.get("/items")
        elapsed = time.perf_counter() - start
    assert response.status_code == 504
    assert "did not answer in time" in response.text
    assert elapsed < 1.5


def test_backend_500_is_502_page(make_frontend: MakeFrontend, tmp_path: Path) -> None:
    backend = start_service(
        "backend",
        tmp_path,
        env={
            "DATABASE_URL": sqlite_url(tmp_path / "f.sqlite3"),
            "FAULT_INJECTION_ENABLED": "true",
            "FAULT_ERROR_RATE": "1",
        },
    )
    try:
        client = make_frontend(backend_url=backend.url)
        response = client.get("/")
        assert response.status_code == 502
        assert "failed to answer properly" in response.text
    finally:
        backend.stop()


def call_hello(url: str, retries: int) -> str:
    async def _call() -> str:
        settings = FrontendSettings(backend_url=url, backend_get_retries=retries)
        async with create_session(settings) as session:
            return await BackendClient(session, settings).hello()

    return asyncio.run(_call())


def test_gets_are_retried_on_503_then_succeed() -> None:
    script: list[tuple[int, bytes] | str] = [(503, b"{}"), (502, b"{}"), OK_HELLO]
    with ScriptedBackend(script) as backend:
        assert call_hello(backend.url, retries=2) == "Hello world"
    assert [r[:2] for r in backend.requests] == [("GET", "/v1/helloworld")] * 3


def test_get_fails_once_retries_are_spent() -> None:
    with (
        ScriptedBackend([(503, b"{}"), (503, b"{}"), OK_HELLO]) as backend,
        pytest.raises(BackendUnavailable) as failure,
    ):
        call_hello(backend.url, retries=1)
    assert failure.value.status == 503
    assert len(backend.requests) == 2


def test_retries_are_bounded(make_frontend: MakeFrontend) -> None:
    with ScriptedBackend([(503, b"{}")]) as backend:
        client = make_frontend(backend_url=backend.url, backend_get_retries=2)
        response = client.get("/items")
    assert response.status_code == 503
    # Two pages calls (items and the unread count), each tried 1 + 2 times.
    assert len(backend.requests) == 6


def test_posts_are_never_retried(make_frontend: MakeFrontend) -> None:
    with ScriptedBackend([(503, b"{}")]) as backend:
        client = make_frontend(backend_url=backend.url, backend_get_retries=3)
        response = client.post("/items", data={"title": "once"})
    assert response.status_code == 503
    assert [r[:2] for r in backend.requests] == [("POST", "/v1/items")]


def test_non_json_answer_is_502(make_frontend: MakeFrontend) -> None:
    with ScriptedBackend([(200, b"<html>proxy error</html>")]) as backend:
        client = make_frontend(backend_url=backend.url)
        assert client.get("/").status_code == 502


@pytest.mark.parametrize("body", [b"<html>proxy error</html>", b"[1, 2]", b'"text"'])
def test_api_relays_only_json_objects(make_frontend: MakeFrontend, body: bytes) -> None:
    with ScriptedBackend([(200, body)]) as backend:
        client = make_frontend(backend_url=backend.url)
        response = client.get("/api/helloworld")
    assert response.status_code == 502
    assert response.json()["error"] == "backend_unavailable"
