"""The service middleware: one layer, every job in its order (servicekit.middleware)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.app import create_service_app
from servicekit.edge import BodyTooLarge, counted_receive
from servicekit.middleware import ServiceMiddleware
from servicekit.settings import ServiceSettings

LIMIT = 10


async def _receive() -> Message:
    return {"type": "http.request", "body": b"x" * 6, "more_body": True}


def _scope(*headers: tuple[bytes, bytes], http_version: str = "1.1") -> Scope:
    return {"type": "http", "http_version": http_version, "headers": list(headers)}


@pytest.mark.parametrize(
    ("scope", "over"),
    [
        # RFC 9112 section 6.3: an HTTP/1.x request with neither header has no body.
        (_scope((b"host", b"x")), False),
        (_scope((b"content-length", b"10")), False),
        (_scope((b"content-length", b"11")), True),
    ],
)
def test_a_body_of_known_length_is_not_counted(scope: Scope, over: bool) -> None:
    receive, too_large = counted_receive(scope, _receive, LIMIT)
    assert receive is _receive
    assert too_large is over


@pytest.mark.parametrize(
    "scope",
    [
        _scope((b"transfer-encoding", b"chunked")),
        _scope(http_version="2"),
        # Over HTTP/2 a length is only advisory (RFC 9113, section 8.1.1).
        _scope((b"content-length", b"5"), http_version="2"),
    ],
)
def test_a_streamed_body_is_counted_as_it_is_read(scope: Scope) -> None:
    receive, too_large = counted_receive(scope, _receive, LIMIT)
    assert receive is not _receive
    assert not too_large

    async def read_twice() -> None:
        await receive()  # 6 bytes
        await receive()  # 12: over

    with pytest.raises(BodyTooLarge):
        asyncio.run(read_twice())


class _Inner:
    """A service's own middleware: it sees the request id and its answer is decorated."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/inner":
            await send({"type": "http.response.start", "status": 418, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)


def _app(**settings: Any) -> FastAPI:
    app = create_service_app(
        ServiceSettings(service_name="sample", port=8080, **settings),
        title="sample",
        middleware=[Middleware(_Inner)],
    )

    @app.get("/page")
    async def page() -> HTMLResponse:
        return HTMLResponse("<h1>page</h1>")

    return app


def test_one_servicekit_layer_with_the_service_middleware_inside() -> None:
    app = _app(tracing_enabled=False)
    assert [item.cls for item in app.user_middleware] == [ServiceMiddleware, _Inner]


def test_every_response_gets_the_headers_in_one_order() -> None:
    """The application's, then the security headers, the request id and the task."""
    with TestClient(_app(tracing_enabled=False)) as client:
        answer = client.get("/page", headers={"X-Request-Id": "order-1"})
        inner = client.get("/inner")
    assert [name.lower() for name in answer.headers] == [
        "content-length",
        "content-type",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "content-security-policy",
        "x-request-id",
        "x-served-by",
    ]
    assert answer.headers["x-request-id"] == "order-1"
    # What the service's own middleware answers passes through the shared layer too.
    assert inner.status_code == 418
    assert inner.headers["x-content-type-options"] == "nosniff"
    assert inner.headers["x-request-id"]


def test_a_declared_body_over_the_limit_is_413_before_the_application() -> None:
    """Served without the edge protocol (which refuses it first), the middleware refuses it."""
    with TestClient(_app(tracing_enabled=False, max_request_body_bytes=1024)) as client:
        answer = client.post("/inner", content=b"x" * 1025, headers={"X-Request-Id": "too-large-1"})
    assert answer.status_code == 413
    assert answer.headers["connection"] == "close"
    assert answer.json() == {
        "error": "payload_too_large",
        "message": "request body exceeds 1024 bytes",
        "request_id": "too-large-1",
    }
    assert answer.headers["x-content-type-options"] == "nosniff"
