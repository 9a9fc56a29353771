"""The frontend's error contract: JSON under /api, the site's error page elsewhere.

Also how backend connection failures are named: a reset on a reused
connection is retried for a GET and is a 502 for a write, never a 504.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.frontend.conftest import MakeFrontend
from tests.support import ScriptedBackend, Service

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def assert_json_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert (body["error"], body["request_id"]) == (error, response.headers["x-request-id"])
    return body


def assert_error_page(response: httpx.Response, status: int) -> None:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert f"Status {status}" in response.text
    assert response.headers["x-request-id"] in response.text


@pytest.mark.parametrize(
    "raw",
    [b'{"title": "\\ud800x"}', b'{"title": "\\udfff"}', b"\xff\xfe", b'{"title": '],
    ids=["lone-high-surrogate", "lone-low-surrogate", "not-utf8", "truncated"],
)
def test_api_bodies_the_backend_refuses_are_its_422_never_a_500(
    frontend: TestClient, backend: Service, raw: bytes
) -> None:
    before = httpx.get(f"{backend.url}/v1/items").json()["data"]
    response = frontend.post(
        "/api/items", content=raw, headers={"content-type": "application/json"}
    )
    assert_json_error(response, 422, "validation_error")
    assert httpx.get(f"{backend.url}/v1/items").json()["data"] == before


def test_api_body_is_passed_on_byte_for_byte(make_frontend: MakeFrontend) -> None:
    raw = b'{"title":"caf\\u00e9 \xf0\x9f\x8d\xb0",  "name" : "x"}'
    created = b'{"id":1,"title":"t","name":"","content":"","favorite":false,"created_at":"x"}'
    with ScriptedBackend([(201, created)]) as backend:
        client = make_frontend(backend_url=backend.url)
        response = client.post(
            "/api/items", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 201
        ((_, _, headers),) = backend.requests
    assert backend.bodies == [raw]
    assert {k.lower(): v for k, v in headers.items()}["content-type"] == "application/json"


def test_api_writes_must_be_declared_json(frontend: TestClient) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": content_type} if content_type else {}
        response = frontend.post("/api/items", content=b'{"title": "x"}', headers=headers)
        assert_json_error(response, 415, "unsupported_media_type")


def test_unknown_page_and_bad_query_are_the_sites_error_page(frontend: TestClient) -> None:
    missing = frontend.get("/no-such-page", headers=BROWSER)
    assert_error_page(missing, 404)
    assert "<h1>Not found</h1>" in missing.text
    assert "<p>There is no page at this address.</p>" in missing.text
    assert "Not Found" not in missing.text  # one wording
    refused = frontend.get("/items?favorite=maybe", headers=BROWSER)
    assert_error_page(refused, 422)
    assert_error_page(frontend.delete("/items", headers=BROWSER), 405)
    # The same request again gives the same answer: no "Try again" on these.
    for page in (missing, refused):
        assert "Try again" not in page.text
        assert '<a href="/">Home</a>' in page.text


def test_api_and_health_errors_stay_json(frontend: TestClient) -> None:
    assert_json_error(frontend.get("/api/no-such-thing", headers=BROWSER), 404, "not_found")
    assert_json_error(
        frontend.get("/api/items?favorite=maybe", headers=BROWSER), 422, "validation_error"
    )
    assert_json_error(frontend.post("/healthz"), 405, "method_not_allowed")


def test_unhandled_error_is_the_error_page_and_closes_the_connection(
    make_frontend: MakeFrontend,
) -> None:
    # A backend whose answers lack what the page reads: the page fails unexpectedly.
    with ScriptedBackend([(200, b'{"unexpected": true}')]) as backend:
        client = make_frontend(backend_url=backend.url, raise_server_exceptions=False)
        page = client.get("/", headers=BROWSER)
        api = client.get("/api/helloworld")
    assert_error_page(page, 500)
    assert page.headers["connection"] == "close"
    assert api.status_code == 200  # /api relays the object as it came


class ResettingBackend:
    """Answers the first request of each connection, then resets it on the next one.

    The frontend's pool reuses the kept-alive connection and meets the reset:
    what a backend that closed an idle connection (or died) looks like.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.served = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            for number in range(2):
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                if number == 1:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
                    return  # closed with SO_LINGER 0: a reset
                body = b'{"data": "Hello world", "id": 1, "favorite": true, "title": "t"}'
                self.served += 1
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )

    def __enter__(self) -> ResettingBackend:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()


@pytest.fixture
def resetting(make_frontend: MakeFrontend) -> Iterator[tuple[TestClient, ResettingBackend]]:
    with ResettingBackend() as backend:
        yield make_frontend(backend_url=backend.url), backend


def test_reset_on_a_reused_connection_is_retried_for_a_get(
    resetting: tuple[TestClient, ResettingBackend],
) -> None:
    client, backend = resetting
    assert client.get("/api/helloworld").status_code == 200
    assert client.get("/api/helloworld").status_code == 200  # reset, retried
    assert backend.served == 2


def test_reset_on_a_reused_connection_is_a_502_for_a_write(
    resetting: tuple[TestClient, ResettingBackend],
) -> None:
    client, _ = resetting
    assert client.get("/api/helloworld").status_code == 200
    # POST is not idempotent: neither the frontend nor its pool may send it twice.
    response = client.post("/api/items", json={"title": "once"})
    body = assert_json_error(response, 502, "backend_unavailable")
    assert "time" not in body["message"]
