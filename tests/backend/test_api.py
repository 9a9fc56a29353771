"""The backend API, route by route, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import create_async_engine

import backend.app
import servicekit.app
from backend.app import create_app
from backend.settings import BackendSettings
from tests.support import assert_routes_on_the_app, sqlite_url


def item_count(client: TestClient) -> int:
    return len(client.get("/v1/items", params={"limit": 500}).json()["data"])


def test_healthz_answers_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_answers_ok_when_database_answers(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "database_writes": "ok", "schema": "ok"},
    }


def test_readyz_answers_503_with_reason_when_database_does_not(client: TestClient) -> None:
    app: Any = client.app
    # A PostgreSQL server that is not there: port 1 on loopback refuses.
    app.state.engine = create_async_engine("postgresql+asyncpg://u:p@127.0.0.1:1/none")
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] != "ok"
    assert (
        "refused" in body["checks"]["database"].lower()
        or "connect" in body["checks"]["database"].lower()
    )
    # Liveness does not depend on the database.
    assert client.get("/healthz").status_code == 200


def test_helloworld(client: TestClient) -> None:
    assert client.get("/v1/helloworld").json() == {"data": "Hello world"}


def test_fresh_database_is_seeded(client: TestClient) -> None:
    items = client.get("/v1/items").json()["data"]
    assert [item["title"] for item in items] == ["X-Ray", "FireLens", "Fargate"]
    notifications = client.get("/v1/notifications").json()["data"]
    assert len(notifications) == 2


def test_create_item_returns_201_with_id_and_is_listed(client: TestClient) -> None:
    response = client.post("/v1/items", json={"title": "  ECS  ", "name": "me", "content": "body"})
    assert response.status_code == 201
    item = response.json()
    assert isinstance(item["id"], int)
    assert item["title"] == "ECS"
    assert item["favorite"] is False
    assert item["created_at"].endswith("Z") or item["created_at"].endswith("+00:00")
    assert response.headers["location"] == f"/v1/items/{item['id']}"
    assert client.get(f"/v1/items/{item['id']}").json() == item
    assert client.get("/v1/items").json()["data"][0] == item


def test_create_item_needs_only_a_title(client: TestClient) -> None:
    response = client.post("/v1/items", json={"title": "t"})
    assert response.status_code == 201
    assert response.json()["name"] == ""
    assert response.json()["content"] == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": 42}, "title"),
        ({"title": None}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 101}, "title"),
        ({"title": "nul\x00byte"}, "title"),
        ({"title": "ok", "name": "n" * 51}, "name"),
        ({"title": "ok", "content": "c" * 1001}, "content"),
        ({"title": "ok", "content": ["list"]}, "content"),
        ({"title": "ok", "favourite": True}, "favourite"),
        (["title"], "body"),
    ],
)
def test_create_item_rejects_bad_input_naming_the_field(
    client: TestClient, body: Any, field: str
) -> None:
    before = item_count(client)
    response = client.post("/v1/items", json=body)
    assert response.status_code == 422
    payload = response.json()
    assert payload["error"] == "validation_error"
    assert field in [f["field"] for f in payload["fields"]]
    assert field in payload["message"]
    assert item_count(client) == before


def test_create_item_rejects_malformed_json(client: TestClient) -> None:
    before = item_count(client)
    response = client.post(
        "/v1/items", content=b'{"title": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert item_count(client) == before


def test_list_items_filters_on_favorite(client: TestClient) -> None:
    first = client.get("/v1/items").json()["data"][0]
    client.put(f"/v1/items/{first['id']}/favorite", json={"favorite": True})
    favorites = client.get("/v1/items", params={"favorite": "true"}).json()["data"]
    others = client.get("/v1/items", params={"favorite": "false"}).json()["data"]
    assert [item["id"] for item in favorites] == [first["id"]]
    assert first["id"] not in [item["id"] for item in others]
    assert len(others) == 2


def test_list_items_rejects_a_bad_filter(client: TestClient) -> None:
    response = client.get("/v1/items", params={"favorite": "maybe"})
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "favorite"
    assert client.get("/v1/items", params={"limit": 0}).status_code == 422


def test_mark_and_unmark_favorite_is_idempotent(client: TestClient) -> None:
    item_id = client.get("/v1/items").json()["data"][0]["id"]
    for _ in range(2):
        response = client.put(f"/v1/items/{item_id}/favorite", json={"favorite": True})
        assert response.status_code == 200
        assert response.json()["favorite"] is True
    assert client.get(f"/v1/items/{item_id}").json()["favorite"] is True
    response = client.put(f"/v1/items/{item_id}/favorite", json={"favorite": False})
    assert response.json()["favorite"] is False
    assert client.get(f"/v1/items/{item_id}").json()["favorite"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "favorite"), ({"favorite": "yes"}, "favorite"), ({"favorite": 1}, "favorite")],
)
def test_favorite_rejects_bad_input(client: TestClient, body: Any, field: str) -> None:
    item = client.get("/v1/items").json()["data"][0]
    response = client.put(f"/v1/items/{item['id']}/favorite", json=body)
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == field
    assert client.get(f"/v1/items/{item['id']}").json() == item


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/items/999", 404),
        ("/v1/items/0", 422),
        ("/v1/items/-3", 422),
        ("/v1/items/abc", 422),
        ("/v1/items/99999999999999999999", 422),
    ],
)
def test_get_item_with_unknown_or_invalid_id(client: TestClient, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status
    body = response.json()
    if status == 404:
        assert body == {
            "error": "not_found",
            "message": "item 999 not found",
            "request_id": response.headers["x-request-id"],
        }
    else:
        assert body["fields"][0]["field"] == "item_id"


def test_favorite_unknown_item_is_404(client: TestClient) -> None:
    response = client.put("/v1/items/12345/favorite", json={"favorite": True})
    assert response.status_code == 404
    assert response.json()["message"] == "item 12345 not found"


def test_notifications_list_count_and_mark_read(client: TestClient) -> None:
    notifications = client.get("/v1/notifications").json()["data"]
    assert all(n["unread"] for n in notifications)
    assert client.get("/v1/notifications/count").json() == {"unread": 2}

    first = notifications[0]["id"]
    response = client.put(f"/v1/notifications/{first}/read")
    assert response.status_code == 200
    assert response.json()["unread"] is False
    assert client.get("/v1/notifications/count").json() == {"unread": 1}
    assert client.put(f"/v1/notifications/{first}/read").status_code == 200
    assert client.get("/v1/notifications/count").json() == {"unread": 1}

    unread = client.get("/v1/notifications", params={"unread": "true"}).json()["data"]
    assert [n["id"] for n in unread] == [notifications[1]["id"]]


def test_mark_all_notifications_read(client: TestClient) -> None:
    assert client.put("/v1/notifications/read").json() == {"updated": 2}
    assert client.get("/v1/notifications/count").json() == {"unread": 0}
    assert client.put("/v1/notifications/read").json() == {"updated": 0}


@pytest.mark.parametrize(
    ("path", "status"), [("/v1/notifications/777/read", 404), ("/v1/notifications/0/read", 422)]
)
def test_mark_read_unknown_or_invalid_id(client: TestClient, path: str, status: int) -> None:
    response = client.put(path)
    assert response.status_code == status
    assert client.get("/v1/notifications/count").json() == {"unread": 2}


def test_unknown_route_is_json_404(client: TestClient) -> None:
    response = client.get("/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_wrong_method_is_json_405(client: TestClient) -> None:
    response = client.delete("/v1/items")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


def test_data_survives_a_restart(make_client: Any) -> None:
    first = make_client()
    created = first.post("/v1/items", json={"title": "kept"}).json()
    first.__exit__(None, None, None)
    second = make_client()
    assert second.get(f"/v1/items/{created['id']}").json()["title"] == "kept"
    assert [i["title"] for i in second.get("/v1/items").json()["data"]].count("Fargate") == 1


def test_create_notification_is_unread_and_counted(client: TestClient) -> None:
    before = client.get("/v1/notifications/count").json()["unread"]
    response = client.post(
        "/v1/notifications", json={"title": " Deploy ", "description": "v2 is out"}
    )
    assert response.status_code == 201
    created = response.json()
    assert (created["title"], created["category"], created["unread"]) == (
        "Deploy",
        "information",
        True,
    )
    assert response.headers["location"] == f"/v1/notifications/{created['id']}"
    assert client.get("/v1/notifications").json()["data"][0] == created
    assert client.get("/v1/notifications/count").json()["unread"] == before + 1


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "title"), ({"title": "t", "category": ""}, "category"), ({"title": "t", "x": 1}, "x")],
)
def test_create_notification_rejects_bad_input(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    before = len(client.get("/v1/notifications").json()["data"])
    response = client.post("/v1/notifications", json=body)
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == field
    assert len(client.get("/v1/notifications").json()["data"]) == before


def test_list_items_pages_with_offset_and_total(client: TestClient) -> None:
    for number in range(7):
        client.post("/v1/items", json={"title": f"paged {number}"})
    client.put("/v1/items/1/favorite", json={"favorite": True})
    everything = client.get("/v1/items", params={"limit": 500}).json()
    assert everything["total"] == 10  # 3 seeded + 7
    assert everything["offset"] == 0
    ids = [item["id"] for item in everything["data"]]

    pages = [
        client.get("/v1/items", params={"limit": 4, "offset": offset}).json()
        for offset in (0, 4, 8)
    ]
    assert [page["total"] for page in pages] == [10, 10, 10]
    assert [[item["id"] for item in page["data"]] for page in pages] == [
        ids[0:4],
        ids[4:8],
        ids[8:10],
    ]
    beyond = client.get("/v1/items", params={"offset": 50}).json()
    assert beyond == {"total": 10, "limit": 100, "offset": 50, "data": []}

    favourites = client.get("/v1/items", params={"favorite": "true", "limit": 1}).json()
    assert favourites["total"] == 1
    assert [item["id"] for item in favourites["data"]] == [1]
    others = client.get("/v1/items", params={"favorite": "false"}).json()
    assert others["total"] == 9


@pytest.mark.parametrize("query", [{"offset": "-1"}, {"offset": "x"}, {"limit": "0"}])
def test_list_paging_rejects_bad_values(client: TestClient, query: dict[str, str]) -> None:
    for path in ("/v1/items", "/v1/notifications"):
        response = client.get(path, params=query)
        assert response.status_code == 422
        assert response.json()["fields"][0]["field"] == next(iter(query))


def test_notifications_page_with_offset_and_total(client: TestClient) -> None:
    first = client.get("/v1/notifications", params={"limit": 1}).json()
    second = client.get("/v1/notifications", params={"limit": 1, "offset": 1}).json()
    assert first["total"] == second["total"] == 2
    assert first["data"][0]["id"] > second["data"][0]["id"]  # newest first
    client.put(f"/v1/notifications/{first['data'][0]['id']}/read")
    unread = client.get("/v1/notifications", params={"unread": "true"}).json()
    assert unread["total"] == 1
    assert [n["id"] for n in unread["data"]] == [second["data"][0]["id"]]


def test_the_documented_maximum_applies_to_the_text_as_sent(client: TestClient) -> None:
    """Stripping comes after the length check: the schema's maxLength is the truth."""
    response = client.post("/v1/items", json={"title": "    " + "a" * 100})
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "title"
    assert client.post("/v1/items", json={"title": " " + "a" * 99}).status_code == 201


def test_the_routers_are_served_from_the_app_s_own_router(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = BackendSettings(
        database_url=sqlite_url(tmp_path / "b.sqlite3"),
        api_docs_enabled=True,
        fault_injection_enabled=True,
    )
    assert_routes_on_the_app(lambda: create_app(settings), monkeypatch, servicekit.app, backend.app)
