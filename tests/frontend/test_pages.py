"""The frontend's pages, each against a real backend process."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.testclient import TestClient

import servicekit.app
from frontend.app import create_app
from frontend.settings import FrontendSettings
from tests.support import Service, assert_routes_on_the_app


def titles(html: str) -> list[str]:
    """Item titles, in page order."""
    return re.findall(
        r'<article class="card item[^"]*".*?<h3[^>]*>(?:★ )?([^<]+)</h3>', html, re.DOTALL
    )


def test_healthz_and_readyz(frontend: TestClient) -> None:
    assert frontend.get("/healthz").json() == {"status": "ok"}
    assert frontend.get("/readyz").json() == {"status": "ok", "checks": {}}


def test_home_shows_backend_message_and_unread_count(frontend: TestClient) -> None:
    response = frontend.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Hello world</h1>" in response.text
    badge = re.search(r'<span class="badge">(.*?)</span></a>', response.text)
    assert badge is not None
    assert re.sub(r"<[^>]+>", "", badge.group(1)) == ", 2 unread"  # as a screen reader says it


@pytest.mark.quick
def test_items_page_lists_backend_items(frontend: TestClient, backend: Service) -> None:
    response = frontend.get("/items")
    assert response.status_code == 200
    expected = [item["title"] for item in httpx.get(f"{backend.url}/v1/items").json()["data"]]
    assert titles(response.text) == expected


def test_add_item_redirects_and_shows_it(frontend: TestClient) -> None:
    response = frontend.post("/items", data={"title": "Cloud <Map>", "name": "me", "content": "c"})
    assert response.status_code == 303
    found = re.fullmatch(r"/items\?added=(\d+)#item-(\d+)", response.headers["location"])
    assert found is not None
    assert found.group(1) == found.group(2)
    page = frontend.get(response.headers["location"]).text
    assert titles(page)[0] == "Cloud &lt;Map&gt;"  # escaped, not injected
    # Feedback that it worked, and the new item marked.
    assert '<p class="notice" role="status">Added “Cloud &lt;Map&gt;”.</p>' in page
    assert f'<article class="card item added" id="item-{found.group(1)}">' in page


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"title": ""}, "title", "Enter a title."),
        ({"title": "   "}, "title", "Enter a title."),
        ({"title": "x" * 101}, "title", "Use at most 100 characters."),
        ({"title": "ok", "name": "n" * 51}, "name", "Use at most 50 characters."),
        ({"title": "nul \x00 byte"}, "title", "Remove the invisible control character"),
    ],
)
def test_add_item_with_bad_input_shows_the_message_beside_the_field(
    frontend: TestClient, form: dict[str, str], field: str, message: str
) -> None:
    before = titles(frontend.get("/items").text)
    response = frontend.post("/items", data=form)
    assert response.status_code == 422
    page = response.text
    assert '<p class="error" role="alert">The item was not added: please correct the field' in page
    error = re.search(rf'<p class="field-error" id="{field}-error">([^<]+)</p>', page)
    assert error is not None
    assert error.group(1).startswith(message)
    assert "String should" not in page  # not pydantic's wording
    assert "^[^" not in page  # nor its pattern
    marked = re.search(rf'<(?:input|textarea) id="{field}"[^>]*>', page)
    assert marked is not None
    assert 'aria-invalid="true"' in marked.group(0)
    assert f'aria-describedby="{field}-hint {field}-error"' in marked.group(0)
    assert page.count('aria-invalid="true"') == 1
    # What was typed is kept (escaped).
    if field == "name":
        assert f'value="{form["name"]}"' in page
    assert titles(frontend.get("/items").text) == before


def test_favourite_and_unfavourite_from_the_page(frontend: TestClient, backend: Service) -> None:
    item = httpx.get(f"{backend.url}/v1/items").json()["data"][0]
    response = frontend.post(f"/items/{item['id']}/favorite", data={"favorite": "true"})
    assert response.status_code == 303
    assert httpx.get(f"{backend.url}/v1/items/{item['id']}").json()["favorite"] is True
    favourites = frontend.get("/items", params={"favorite": "true"}).text
    assert titles(favourites) == [item["title"]]
    assert f'<h3 id="item-{item["id"]}-title">★ {item["title"]}</h3>' in favourites
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
    assert "Mark all read</button>" in frontend.get("/notifications").text
    assert frontend.post("/notifications/read").status_code == 303
    assert httpx.get(f"{backend.url}/v1/notifications/count").json() == {"unread": 0}
    page = frontend.get("/notifications").text
    assert "(0 unread)" in page
    assert "Mark all read" not in page  # nothing left to mark


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


def test_the_routers_are_served_from_the_app_s_own_router(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = FrontendSettings(backend_url="http://127.0.0.1:9", api_docs_enabled=True)
    assert_routes_on_the_app(lambda: create_app(settings), monkeypatch, servicekit.app)
