"""Security headers on every page and the same-origin rule for writes, over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.support import Service

# Left out by dev.py test --quick (frontend: test_pages runs a real backend).
pytestmark = pytest.mark.slow

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
        {"Origin": "https://testserver"},
        {"Origin": "http://testserver:8080"},
        {"Origin": "http://[testserver]/"},  # not a URL: urlsplit raises
    ],
    ids=[
        "origin",
        "opaque-origin",
        "referer",
        "lookalike",
        "other-scheme",
        "other-port",
        "not-a-url",
    ],
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


def test_a_foreign_host_is_refused_but_health_checks_answer(frontend: TestClient) -> None:
    """DNS rebinding: a page on evil.example whose name now points at the service."""
    for path in ["/", "/items", "/api/items"]:
        response = frontend.get(path, headers={"Host": "evil.example"})
        assert response.status_code == 400, path
    assert frontend.get("/api/items", headers={"Host": "evil.example"}).json()["error"] == (
        "bad_request"
    )
    # The load balancer's health checks name the task's address.
    assert frontend.get("/healthz", headers={"Host": "10.0.1.23:8080"}).status_code == 200


def test_allowed_hosts_take_a_domain_and_its_subdomains(make_frontend: Any) -> None:
    client = make_frontend(backend_url="http://127.0.0.1:9", allowed_hosts=".example.com")
    for host in ["example.com", "www.example.com", "WWW.Example.com:443"]:
        assert client.get("/static/style.css", headers={"Host": host}).status_code == 200, host
    for host in ["testserver", "example.com.evil.example", "badexample.com"]:
        assert client.get("/static/style.css", headers={"Host": host}).status_code == 400, host


def test_a_form_field_that_is_not_utf8_is_a_422_naming_it(
    frontend: TestClient, backend: Service
) -> None:
    items = len(httpx.get(f"{backend.url}/v1/items").json()["data"])
    response = frontend.post(
        "/items",
        content=b"title=ok&content=caf%E9",  # latin-1, not UTF-8
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 422
    assert "content" in response.text
    assert len(httpx.get(f"{backend.url}/v1/items").json()["data"]) == items
    accepted = frontend.post(
        "/items",
        content=b"title=caf%C3%A9+au+lait",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert accepted.status_code == 303
    assert httpx.get(f"{backend.url}/v1/items").json()["data"][0]["title"] == "café au lait"
