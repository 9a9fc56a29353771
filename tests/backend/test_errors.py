"""The backend's error contract: every error is the JSON body with the request id."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from tests.backend.conftest import MakeClient


def assert_error_body(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert body["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@pytest.mark.parametrize(
    "raw",
    [b'{"title": ', b"\xff\xfe{}", b'{"title": "a"} trailing'],
    ids=["truncated", "not-utf8", "trailing"],
)
def test_a_body_that_is_not_json_is_a_422(client: TestClient, raw: bytes) -> None:
    response = client.post("/v1/items", content=raw, headers={"content-type": "application/json"})
    body = assert_error_body(response, 422, "validation_error")
    assert body["fields"][0]["field"] == "body"


def test_a_lone_surrogate_is_a_422_not_a_500(client: TestClient) -> None:
    response = client.post(
        "/v1/items", content=b'{"title": "\\ud800x"}', headers={"content-type": "application/json"}
    )
    assert_error_body(response, 422, "validation_error")


@pytest.mark.slow
def test_database_down_is_the_json_500_and_closes_the_connection(make_client: MakeClient) -> None:
    client = make_client(raise_server_exceptions=False)
    broken = create_async_engine("sqlite+aiosqlite:////nonexistent/dir/db.sqlite3")
    client.app.state.sessions = async_sessionmaker(broken)  # type: ignore[attr-defined]
    response = client.get("/v1/items", headers={"X-Request-Id": "db-down-1"})
    body = assert_error_body(response, 500, "internal_error")
    assert body["request_id"] == "db-down-1"
    assert response.headers["connection"] == "close"
    assert "sqlite" not in response.text.lower()  # no internals in the answer


def test_unknown_method_lists_every_allowed_method(client: TestClient) -> None:
    response = client.delete("/v1/items")
    assert_error_body(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, OPTIONS, POST"


def test_options_answers_the_allowed_methods(client: TestClient) -> None:
    response = client.options("/v1/items/1/favorite")
    assert response.status_code == 204
    assert response.headers["allow"] == "OPTIONS, PUT"
    assert_error_body(client.options("/v1/nothing-here"), 404, "not_found")
