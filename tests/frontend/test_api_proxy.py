"""``/api`` on the frontend: the backend's JSON API through the public entry point."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.frontend.conftest import MakeFrontend
from tests.support import Service, free_port


def test_helloworld_through_the_frontend(frontend: TestClient) -> None:
    assert frontend.get("/api/helloworld").json() == {"data": "Hello world"}


@pytest.mark.parametrize("path", ["/items", "/notifications", "/notifications/count"])
def test_answers_are_the_backends_bytes(frontend: TestClient, backend: Service, path: str) -> None:
    relayed = frontend.get(f"/api{path}")
    direct = httpx.get(f"{backend.url}/v1{path}")
    assert (relayed.status_code, relayed.content) == (direct.status_code, direct.content)
    assert relayed.headers["content-type"] == "application/json"


def test_items_create_list_and_favourite(frontend: TestClient, backend: Service) -> None:
    created = frontend.post("/api/items", json={"title": "via api"})
    assert created.status_code == 201
    item = created.json()
    assert httpx.get(f"{backend.url}/v1/items/{item['id']}").json() == item
    assert frontend.get("/api/items").json()["data"][0] == item
    marked = frontend.put(f"/api/items/{item['id']}/favorite", json={"favorite": True})
    assert marked.json()["favorite"] is True
    favourites = frontend.get("/api/items", params={"favorite": "true"}).json()["data"]
    assert [i["id"] for i in favourites] == [item["id"]]


@pytest.mark.parametrize("path", ["/items", "/notifications"])
def test_paging_is_passed_on(frontend: TestClient, backend: Service, path: str) -> None:
    page = frontend.get(f"/api{path}", params={"limit": 1, "offset": 1})
    assert page.content == httpx.get(f"{backend.url}/v1{path}?limit=1&offset=1").content
    assert (page.json()["limit"], page.json()["offset"], len(page.json()["data"])) == (1, 1, 1)
    refused = frontend.get(f"/api{path}", params={"offset": "-1"})
    assert refused.status_code == 422
    assert refused.json()["fields"][0]["field"] == "offset"


@pytest.mark.parametrize(
    ("body", "field"), [({}, "title"), ({"title": 1}, "title"), ({"title": "x" * 101}, "title")]
)
def test_bad_item_gets_the_backends_422(
    frontend: TestClient, backend: Service, body: dict[str, object], field: str
) -> None:
    before = len(httpx.get(f"{backend.url}/v1/items").json()["data"])
    response = frontend.post("/api/items", json=body)
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == field
    assert len(httpx.get(f"{backend.url}/v1/items").json()["data"]) == before


def test_non_object_body_is_refused_by_the_frontend(frontend: TestClient) -> None:
    response = frontend.post("/api/items", json=["title"])
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


def test_unknown_item_is_the_backends_404(frontend: TestClient) -> None:
    response = frontend.put("/api/items/9999/favorite", json={"favorite": True})
    assert response.status_code == 404
    body = response.json()
    assert (body["error"], body["message"]) == ("not_found", "item 9999 not found")


def test_notifications_through_the_frontend(frontend: TestClient) -> None:
    assert frontend.get("/api/notifications/count").json() == {"unread": 2}
    first = frontend.get("/api/notifications").json()["data"][0]
    assert frontend.put(f"/api/notifications/{first['id']}/read").json()["unread"] is False
    assert frontend.get("/api/notifications/count").json() == {"unread": 1}
    assert frontend.put("/api/notifications/read").json() == {"updated": 1}


def test_backend_down_is_json_503(make_frontend: MakeFrontend) -> None:
    client = make_frontend(backend_url=f"http://127.0.0.1:{free_port()}")
    response = client.get("/api/items")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "backend_unavailable"


def test_notification_created_through_the_frontend(frontend: TestClient, backend: Service) -> None:
    created = frontend.post("/api/notifications", json={"title": "via api", "category": "alert"})
    assert created.status_code == 201
    notification = created.json()
    assert httpx.get(f"{backend.url}/v1/notifications").json()["data"][0] == notification
    assert notification["unread"] is True
