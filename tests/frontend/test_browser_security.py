"""Security headers on every page and the same-origin rule for writes, over HTTP."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.support import Service

SITE = "http://testserver"  # the TestClient's Host
PAGES = ["/", "/items", "/notifications", "/no-such-page"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_carries_the_security_headers(frontend: TestClient, path: str) -> None:
    response = frontend.get(path)
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    assert "<style" not in response.text
    assert "<script>" not in response.text
    assert " style=" not in response.text


def test_json_answers_are_nosniff(frontend: TestClient) -> None:
    response = frontend.get("/api/helloworld")
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_stylesheet_is_served(frontend: TestClient) -> None:
    response = frontend.get("/static/style.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/attack.html"},
        {"Origin": "http://testserver.evil.example"},
    ],
    ids=["origin", "opaque-origin", "referer", "lookalike"],
)
def test_cross_site_form_posts_are_refused_and_change_nothing(
    frontend: TestClient, backend: Service, headers: dict[str, str]
) -> None:
    before = httpx.get(f"{backend.url}/v1/notifications/count").json()
    items = len(httpx.get(f"{backend.url}/v1/items").json()["data"])
    for path, form in [
        ("/items", {"title": "csrf"}),
        ("/items/1/favorite", {"favorite": "true"}),
        ("/notifications/read", {}),
        ("/notifications/1/read", {}),
    ]:
        response = frontend.post(path, data=form, headers=headers)
        assert response.status_code == 403, path
        assert response.headers["content-type"].startswith("text/html")
    api = frontend.post("/api/items", json={"title": "csrf"}, headers=headers)
    assert api.status_code == 403
    assert api.json()["error"] == "forbidden"
    assert httpx.get(f"{backend.url}/v1/notifications/count").json() == before
    assert len(httpx.get(f"{backend.url}/v1/items").json()["data"]) == items


@pytest.mark.parametrize(
    "headers",
    [{"Origin": SITE}, {"Referer": f"{SITE}/items"}, {}],
    ids=["same-origin", "same-referer", "no-browser"],
)
def test_same_site_and_non_browser_posts_are_served(
    frontend: TestClient, headers: dict[str, str]
) -> None:
    response = frontend.post("/items", data={"title": "mine"}, headers=headers)
    assert response.status_code == 303
