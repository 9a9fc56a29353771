"""What a person meets on the pages: paging, filters, times, failed writes, the footer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from frontend.pages import PAGE_SIZE
from tests.conftest import StartService
from tests.frontend.conftest import MakeFrontend
from tests.frontend.test_pages import titles
from tests.support import ScriptedBackend, Service

DASH = "\N{EN DASH}"  # as in "showing 1-20 of 43"
TEMPLATES = Path(__file__).resolve().parents[2] / "frontend/src/frontend/templates"


def add_items(backend: Service, count: int, prefix: str = "bulk") -> None:
    with httpx.Client(base_url=backend.url) as client:
        for number in range(count):
            assert client.post("/v1/items", json={"title": f"{prefix} {number}"}).status_code == 201


def test_items_are_paged_with_a_total(frontend: TestClient, backend: Service) -> None:
    add_items(backend, 2 * PAGE_SIZE)  # + 3 seeded = 43
    first = frontend.get("/items").text
    assert len(titles(first)) == PAGE_SIZE
    assert f"All items: showing 1{DASH}{PAGE_SIZE} of 43" in first
    assert "Page 1 of 3" in first
    assert '<a rel="next" href="/items?page=2">' in first
    assert 'rel="prev"' not in first

    last = frontend.get("/items", params={"page": 3}).text
    assert titles(last) == ["X-Ray", "FireLens", "Fargate"]  # the oldest: the seed
    assert f"showing 41{DASH}43 of 43" in last
    assert '<a rel="prev" href="/items?page=2">' in last
    assert 'rel="next"' not in last
    everything = [t for page in (1, 2, 3) for t in titles(frontend.get(f"/items?page={page}").text)]
    assert len(everything) == len(set(everything)) == 43

    # Past the end (the list shrank, or the number was typed): to the last page.
    beyond = frontend.get("/items", params={"page": 999})
    assert (beyond.status_code, beyond.headers["location"]) == (303, "/items?page=3")
    empty = frontend.get("/items", params={"favorite": "true", "page": 2})
    assert (empty.status_code, empty.headers["location"]) == (303, "/items?favorite=true")
    assert frontend.get("/items", params={"page": 0}).status_code == 422


def test_filter_is_shown_and_kept_across_favouriting(
    frontend: TestClient, backend: Service
) -> None:
    add_items(backend, PAGE_SIZE + 5)
    page = frontend.get("/items", params={"favorite": "false", "page": 2}).text
    assert "<title>Others · sbcntr</title>" in page
    assert '<a href="/items?favorite=false" aria-current="page">Others</a>' in page
    assert page.count('aria-current="page"') == 2  # the filter and the Items section
    assert '<input type="hidden" name="filter" value="false">' in page
    assert (
        '<a rel="next" href="/items?favorite=false&amp;page=3">' not in page
    )  # 28 others: 2 pages
    assert '<a rel="prev" href="/items?favorite=false">' in page
    item_id = int(re.findall(r'id="item-(\d+)"', page)[0])

    response = frontend.post(
        f"/items/{item_id}/favorite", data={"favorite": "true", "filter": "false", "page": "2"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/items?favorite=false&page=2#item-{item_id}"
    favourites = frontend.get("/items", params={"favorite": "true"}).text
    assert '<a href="/items?favorite=true" aria-current="page">Favourites</a>' in favourites
    assert f"Favourites: showing 1{DASH}1 of 1" in favourites
    assert (
        frontend.post(
            f"/items/{item_id}/favorite", data={"favorite": "false", "filter": "maybe"}
        ).status_code
        == 422
    )


def test_notifications_are_paged_and_times_are_machine_readable(
    frontend: TestClient,
) -> None:
    page = frontend.get("/notifications").text
    assert f"Showing 1{DASH}2 of 2" in page
    beyond = frontend.get("/notifications", params={"page": 999})
    assert (beyond.status_code, beyond.headers["location"]) == (303, "/notifications")
    assert "Page 1 of" not in page  # one page: no pager
    times = re.findall(r'<time datetime="([^"]+)">([^<]+)</time>', page)
    assert len(times) == 2
    for iso, text in times:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", iso)  # UTC, no microseconds
        assert re.fullmatch(r"\d\d \w{3} \d{4}, \d\d:\d\d UTC", text)
    assert '<script src="/static/time.js" defer></script>' in page


def test_a_write_the_backend_did_not_confirm_keeps_the_form(make_frontend: MakeFrontend) -> None:
    with ScriptedBackend(["hang"]) as backend:
        client = make_frontend(
            backend_url=backend.url,
            backend_timeout_seconds=0.5,
            backend_connect_timeout_seconds=0.5,
        )
        typed = {"title": 'Typed "title" <b>', "name": "me", "content": "line one\nline two"}
        response = client.post("/items", data=typed)
        requests = list(backend.requests)
    assert response.status_code == 504
    page = response.text
    assert "may or may not have been saved" in page
    assert "could not be loaded" not in page
    assert 'value="Typed &#34;title&#34; &lt;b&gt;"' in page
    assert 'value="me"' in page
    assert ">line one\nline two</textarea>" in page
    assert '<a href="/items">Back to the items</a>' in page
    assert "Try again</a>" not in page
    assert [(method, path) for method, path, _ in requests] == [("POST", "/v1/items")]  # once


def test_a_failed_favourite_says_it_may_have_happened(make_frontend: MakeFrontend) -> None:
    client = make_frontend(backend_url="http://127.0.0.1:9")  # nothing listens on port 9
    response = client.post("/items/3/favorite", data={"favorite": "true"})
    assert response.status_code == 503
    assert "may or may not have been saved" in response.text
    assert '<a href="/items">Back to the items</a>' in response.text
    response = client.post("/notifications/read")
    assert '<a href="/notifications">Back to notifications</a>' in response.text
    get_failure = client.get("/items?favorite=true&page=2")
    assert '<a href="/items?favorite=true&amp;page=2">Try again</a>' in get_failure.text


def test_footer_names_the_tasks_and_the_trace(
    make_frontend: MakeFrontend, backend: Service
) -> None:
    client = make_frontend(backend_url=backend.url, tracing_enabled=True)
    response = client.get("/", headers={"X-Request-Id": "footer-check-1"})
    page = response.text
    backend_task = httpx.get(f"{backend.url}/healthz").headers["x-served-by"].removeprefix("task=")
    assert f'backend task <code data-served="backend">{backend_task}</code>' in page
    assert re.search(r'frontend task <code data-served="frontend">[^<]+:\d+</code>', page)
    assert '<code data-served="request-id">footer-check-1</code>' in page
    root = response.headers["x-amzn-trace-id"].split(";")[0].removeprefix("Root=")
    assert f'trace id <code data-served="trace-id">{root}</code>' in page
    assert "console.aws.amazon.com" not in page  # not on ECS: no console link


def test_footer_on_ecs_reads_task_metadata_once_and_links_to_xray(
    start: StartService, tmp_path: Path, backend: Service
) -> None:
    task_id = "0123456789abcdef0123456789abcdef"
    task = {
        "Cluster": "arn:aws:ecs:ap-northeast-1:123456789012:cluster/sbcntr",
        "TaskARN": f"arn:aws:ecs:ap-northeast-1:123456789012:task/sbcntr/{task_id}",
        "Family": "sbcntr-frontend",
        "Revision": "7",
        "AvailabilityZone": "ap-northeast-1c",
        "LaunchType": "FARGATE",
    }
    with ScriptedBackend([(200, json.dumps(task).encode())]) as metadata:
        frontend = start(
            "frontend",
            env={
                "BACKEND_URL": backend.url,
                "ECS_CONTAINER_METADATA_URI_V4": f"{metadata.url}/v4/abc",
                "AWS_REGION": "ap-northeast-1",
            },
        )
        pages = [httpx.get(f"{frontend.url}{path}") for path in ("/", "/items", "/notifications")]
        asked = [(method, path) for method, path, _ in metadata.requests]
    assert asked == [("GET", "/v4/abc/task")]  # once, at start-up
    for response in pages:
        assert response.headers["x-served-by"] == (
            "task=0123456789abcdef0123456789abcdef; az=ap-northeast-1c"
        )
        assert (
            'frontend task <code data-served="frontend">0123456789abcdef0123456789abcdef</code>'
            " in ap-northeast-1c" in response.text
        )
        root = response.headers["x-amzn-trace-id"].split(";")[0].removeprefix("Root=")
        link = (
            "https://ap-northeast-1.console.aws.amazon.com/cloudwatch/home"
            f"?region=ap-northeast-1#xray:traces/{root}"
        )
        assert f'<a href="{link}"' in response.text


def test_static_files_and_favicon(frontend: TestClient) -> None:
    icon = frontend.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/vnd.microsoft.icon"
    assert icon.content[:4] == b"\0\0\1\0"  # an ICO header
    for path, kind in [
        ("/static/style.css", "text/css"),
        ("/static/time.js", "text/javascript"),
        ("/static/favicon.svg", "image/svg+xml"),
    ]:
        response = frontend.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kind)
    css = frontend.get("/static/style.css").text
    # Long unbroken words wrap (the browser test measures the layout itself).
    assert "main, footer { overflow-wrap: anywhere; }" in css
    assert re.search(r"\.row > \.grow \{[^}]*min-width: 0", css)


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_templates_have_no_inline_script_style_or_handlers(template: str) -> None:
    # A Content-Security-Policy without 'unsafe-inline' must not break the pages.
    text = (TEMPLATES / template).read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", text)
    assert "<style" not in text
    assert not re.search(r"\sstyle=", text)
    assert not re.search(r"\son[a-z]+=", text)


def test_content_keeps_its_line_breaks_and_stays_escaped(
    frontend: TestClient, backend: Service
) -> None:
    content = "first line\n<b>second</b> line\n\nafter a blank line"
    with httpx.Client(base_url=backend.url) as client:
        assert (
            client.post("/v1/items", json={"title": "lines", "content": content}).status_code == 201
        )
    page = frontend.get("/items").text
    escaped = "first line\n&lt;b&gt;second&lt;/b&gt; line\n\nafter a blank line"
    assert f'<p class="content">{escaped}</p>' in page
    css = frontend.get("/static/style.css").text
    assert ".card .content { white-space: pre-line;" in css


def test_both_lists_filter_and_refuse_an_unknown_filter_value_alike(
    frontend: TestClient,
) -> None:
    first = int(
        re.findall(r'action="/notifications/(\d+)/read"', frontend.get("/notifications").text)[0]
    )
    marked = frontend.post(f"/notifications/{first}/read", data={"filter": "true", "page": "1"})
    assert marked.headers["location"] == f"/notifications?unread=true#notification-{first}"
    unread = frontend.get("/notifications", params={"unread": "true"}).text
    assert f"Showing 1{DASH}1 of 1" in unread
    assert '<a href="/notifications?unread=true" aria-current="page">Unread</a>' in unread
    assert '<input type="hidden" name="filter" value="true">' in unread
    read = frontend.get("/notifications", params={"unread": "false"}).text
    assert f"Showing 1{DASH}1 of 1" in read
    assert f'id="notification-{first}"' in read
    # An unknown value is the same error page on both lists.
    for url in ("/items?favorite=maybe", "/notifications?unread=maybe"):
        refused = frontend.get(url, headers={"accept": "text/html"})
        assert refused.status_code == 422, url
        assert "<h1>The request was refused</h1>" in refused.text
