"""The frontend's pages, each against a real backend process."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.support import Service


def titles(html: str) -> list[str]:
    """Item titles, in page order."""
    return re.findall(r'<article class="card item".*?<h3>(?:★ )?([^<]+)</h3>', html, re.DOTALL)


def test_healthz_and_readyz(frontend: TestClient) -> None:
    assert frontend.get("/healthz").json() == {"status": "ok"}
    assert frontend.get("/readyz").json() == {"status": "ok", "checks": {}}


def test_home_shows_backend_message_and_unread_count(frontend: TestClient) -> None:
    response = frontend.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Hello world</h1>" in response.text
    assert '<span class="badge" title="unread">2</span>' in response.text


def test_items_page_lists_backend_items(frontend: TestClient, backend: Service) -> None:
    response = frontend.get("/items")
    assert response.status_code == 200
    expected = [item["title"] for item in httpx.get(f"{backend.url}/v1/items").json()["data"]]
    assert titles(response.text) == expected


def test_add_item_redirects_and_shows_it(frontend: TestClient) -> None:
    response = frontend.post("/items", data={"title": "Cloud <Map>", "name": "me", "content": "c"})
    assert response.status_code == 303
    assert re.fullmatch(r"/items#item-\d+", response.headers["location"])
    page = frontend.get("/items").text
    assert titles(page)[0] == "Cloud &lt;Map&gt;"  # escaped, not injected


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"title": ""}, "title"),
        ({"title": "x" * 101}, "title"),
        ({"title": "ok", "name": "n" * 51}, "name"),
    ],
)
def test_add_item_with_bad_input_shows_form_error(
    frontend: TestClient, form: dict[str, str], message: str
) -> None:
    before = titles(frontend.get("/items").text)
    response = frontend.post("/items", data=form)
    assert response.status_code == 422
    error = re.search(r'<p class="error" role="alert">([^<]+)</p>', response.text)
    assert error is not None
    assert error.group(1).startswith(f"{message}:")
    assert titles(frontend.get("/items").text) == before


def test_favourite_and_unfavourite_from_the_page(frontend: TestClient, backend: Service) -> None:
    item = httpx.get(f"{backend.url}/v1/items").json()["data"][0]
    response = frontend.post(f"/items/{item['id']}/favorite", data={"favorite": "true"})
    assert response.status_code == 303
    assert httpx.get(f"{backend.url}/v1/items/{item['id']}").json()["favorite"] is True
    favourites = frontend.get("/items", params={"favorite": "true"}).text
    assert titles(favourites) == [item["title"]]
    assert f"<h3>★ {item['title']}</h3>" in favourites
    frontend.post(f"/items/{item['id']}/favorite", data={"favorite": "false"})
    assert httpx.get(f"{backend.url}/v1/items/{item['id']}").json()["favorite"] is False


def test_favourite_rejects_bad_value_and_unknown_item(frontend: TestClient) -> None:
    assert frontend.post("/items/1/favorite", data={"favorite": "perhaps"}).status_code == 422
    assert frontend.post("/items/1/favorite", data={}).status_code == 422
    response = frontend.post("/items/4242/favorite", data={"favorite": "true"})
    assert response.status_code == 404
    assert "item 4242 not found" in response.text


def test_notifications_page_and_mark_read(frontend: TestClient, backend: Service) -> None:
    page = frontend.get("/notifications").text
    assert "(2 unread)" in page
    ids = [int(n) for n in re.findall(r'action="/notifications/(\d+)/read"', page)]
    assert len(ids) == 2
    response = frontend.post(f"/notifications/{ids[0]}/read")
    assert response.status_code == 303
    assert httpx.get(f"{backend.url}/v1/notifications/count").json() == {"unread": 1}
    assert "(1 unread)" in frontend.get("/notifications").text


def test_mark_all_read(frontend: TestClient, backend: Service) -> None:
    assert frontend.post("/notifications/read").status_code == 303
    assert httpx.get(f"{backend.url}/v1/notifications/count").json() == {"unread": 0}
    assert "(0 unread)" in frontend.get("/notifications").text


def test_mark_read_unknown_notification_is_404(frontend: TestClient) -> None:
    response = frontend.post("/notifications/999/read")
    assert response.status_code == 404
    assert "notification 999 not found" in response.text


def test_request_id_is_passed_to_the_backend(frontend: TestClient, backend: Service) -> None:
    frontend.get("/", headers={"X-Request-Id": "page-request-42"})
    backend_lines = backend.access_lines_for("page-request-42", 2)
    assert {line["path"] for line in backend_lines} == {
        "/v1/helloworld",
        "/v1/notifications/count",
    }
