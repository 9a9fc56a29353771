"""Every page in a real browser (headless Chromium), on a desktop and a phone.

The services run as processes; the browser types, clicks and measures what a
person would see: no sideways scrolling even with a 100-character word, the
invalid-input message beside its field, paging, the favourite flow keeping
the filter, times in the reader's zone, and the footer's tasks and trace id.
Screenshots of each step are saved (see ``tests/browser.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.browser import Browser
from tests.conftest import StartService
from tests.integration.conftest import Stack, start_stack
from tests.support import SegmentCollector

# Left out by dev.py test --quick (integration: test_services runs both services).
pytestmark = pytest.mark.slow

DASH = "\N{EN DASH}"
LONG_WORD = "W" * 100  # the longest title the API takes, with nowhere to break
LONG_URL = "https://example.com/" + "path/" * 40 + "?q=" + "x" * 200
TRACE_ID = re.compile(r"^1-[0-9a-f]{8}-[0-9a-f]{24}$")


@pytest.fixture
def traced_stack(start: StartService, tmp_path: Path) -> Iterator[Stack]:
    """Both services, every request traced (segments go to a local collector)."""
    with SegmentCollector() as collector:
        tracing = {"AWS_XRAY_DAEMON_ADDRESS": collector.address}
        yield start_stack(start, tmp_path, backend_env=tracing, frontend_env=tracing)


def one(browser: Browser, css: str) -> WebElement:
    return browser.driver.find_element(By.CSS_SELECTOR, css)


def texts(browser: Browser, css: str) -> list[str]:
    return [e.text for e in browser.driver.find_elements(By.CSS_SELECTOR, css)]


def assert_fits(browser: Browser, name: str, *, status: int = 200) -> None:
    """No sideways scrolling, every control reachable, no error logged; a screenshot.

    ``status`` is the page's own expected status: Chromium logs a 4xx page as
    a failed load, which is then no error of the page.
    """
    browser.screenshot(name)
    assert browser.horizontal_overflow() == 0, f"{name}: the page scrolls sideways"
    assert browser.outside_viewport("button, a, input, textarea") == [], name
    expected = f"status of {status} "
    errors = [e for e in browser.console_errors() if status == 200 or expected not in e]
    assert errors == [], name


def assert_footer(browser: Browser, stack: Stack) -> None:
    trace_id = one(browser, 'footer [data-served="trace-id"]').text
    assert TRACE_ID.match(trace_id), trace_id
    backend_tasks = texts(browser, 'footer [data-served="backend"]')
    assert backend_tasks == [
        f"{httpx.get(stack.backend.url + '/healthz').headers['x-served-by']}".removeprefix("task=")
    ]
    assert one(browser, 'footer [data-served="frontend"]').text.endswith(
        f":{stack.frontend.process.pid}"
    )
    assert re.fullmatch(r"[0-9a-f]{32}", one(browser, 'footer [data-served="request-id"]').text)


def add_item(browser: Browser, title: str, name: str = "", content: str = "") -> None:
    for field, value in (("title", title), ("name", name), ("content", content)):
        element = one(browser, f"#add-item #{field}")
        element.clear()
        if value:
            element.send_keys(value)
    browser.follow(lambda: one(browser, "#add-item button[type=submit]"))


def test_pages_in_a_browser(browser: Browser, traced_stack: Stack) -> None:
    stack = traced_stack
    base = stack.frontend.url

    # Home: the footer tells who served the page and its trace.
    browser.open(base + "/")
    assert one(browser, "h1").text == "Hello world"
    assert_footer(browser, stack)
    assert_fits(browser, "01-home-desktop")

    # A 100-character word and a long pasted URL: the page does not widen.
    browser.open(base + "/items")
    add_item(browser, LONG_WORD, name="n" * 50, content=LONG_URL)
    assert re.search(r"/items\?added=\d+#item-\d+$", browser.driver.current_url)
    assert one(browser, ".notice[role=status]").text == f"Added “{LONG_WORD}”."
    added = one(browser, "article.item.added")
    assert added.find_element(By.CSS_SELECTOR, "h3").text == LONG_WORD
    assert added.find_element(By.CSS_SELECTOR, "button").is_displayed()
    assert_footer(browser, stack)
    assert_fits(browser, "02-items-long-word-desktop")

    # Times: machine-readable UTC in the markup, shown in the reader's zone (Tokyo here).
    time = one(browser, "article.item.added time")
    assert time.get_attribute("datetime").endswith("Z")
    assert time.get_attribute("title").endswith("UTC")
    assert "UTC" not in time.text

    # Invalid input: the message in plain words beside the field, what was typed kept.
    add_item(browser, "   ", name="kept name")
    title = one(browser, "#add-item #title")
    assert title.get_attribute("aria-invalid") == "true"
    assert one(browser, "#title-error").text == "Enter a title."
    assert "title-error" in title.get_attribute("aria-describedby")
    assert one(browser, "#add-item #name").get_attribute("value") == "kept name"
    assert one(browser, "#add-item [role=alert]").text.startswith("The item was not added")
    assert_fits(browser, "03-items-invalid-desktop", status=422)

    # Favourite from a filtered view: the filter stays, and is shown.
    browser.open(base + "/items?favorite=false")
    first_title = one(browser, "article.item h3").text
    browser.follow(lambda: one(browser, "article.item button"))
    assert "favorite=false" in browser.driver.current_url
    assert one(browser, 'nav.filters [aria-current="page"]').text == "Others"
    assert first_title not in texts(browser, "article.item h3")
    browser.follow(lambda: one(browser, 'nav.filters a[href="/items?favorite=true"]'))
    assert texts(browser, "article.item h3") == [f"★ {first_title}"]
    assert_fits(browser, "04-items-favourites-desktop")

    # Paging: 25 more items make two pages; "Older" goes to the second.
    with httpx.Client(base_url=stack.backend.url) as api:
        for number in range(25):
            api.post("/v1/items", json={"title": f"paged item {number}"})
    browser.open(base + "/items")
    assert "Page 1 of 2" in one(browser, "nav.pager").text
    assert one(browser, "#list-summary").text == f"All items: showing 1{DASH}20 of 29"
    browser.follow(lambda: one(browser, 'nav.pager a[rel="next"]'))
    assert browser.driver.current_url.endswith("/items?page=2")
    assert one(browser, "#list-summary").text == f"All items: showing 21{DASH}29 of 29"
    assert len(texts(browser, "article.item")) == 9
    assert_fits(browser, "05-items-page-2-desktop")

    # Notifications: "Mark all read" only while something is unread.
    browser.open(base + "/notifications")
    browser.follow(lambda: one(browser, 'form[action="/notifications/read"] button'))
    assert "(0 unread)" in one(browser, "h1").text
    assert browser.driver.find_elements(By.CSS_SELECTOR, 'form[action="/notifications/read"]') == []
    assert_footer(browser, stack)
    assert_fits(browser, "06-notifications-desktop")

    # The same pages on a phone.
    browser.mobile()
    for path, name in [
        ("/", "07-home-mobile"),
        ("/items", "08-items-mobile"),
        ("/items?page=2", "09-items-page-2-mobile"),
        ("/items?favorite=true", "10-items-favourites-mobile"),
        ("/notifications", "11-notifications-mobile"),
    ]:
        browser.open(base + path)
        assert browser.run("return window.innerWidth") == 390
        assert_footer(browser, stack)
        assert_fits(browser, name)
    # Many unread: the Notifications link and its count stay on one line, the
    # current page's underline ends at the label.
    with httpx.Client(base_url=stack.backend.url) as backend:
        for number in range(199):
            body = {"title": f"unread {number}"}
            assert backend.post("/v1/notifications", json=body).status_code == 201
    browser.open(base + "/notifications")
    link = one(browser, 'header nav a[href="/notifications"]')
    assert "199" in link.text
    assert browser.run("return arguments[0].getClientRects().length", link) == 1
    badge = link.find_element(By.CSS_SELECTOR, ".badge")
    assert browser.run("return getComputedStyle(arguments[0]).display", badge) == "inline-block"
    assert_fits(browser, "13-notifications-199-unread-mobile")

    browser.open(base + "/items?page=2")
    long_item = [
        e
        for e in browser.driver.find_elements(By.CSS_SELECTOR, "article.item")
        if LONG_WORD in e.text
    ]
    assert long_item, "the long-titled item is on page 2 by now"
    assert long_item[0].find_element(By.CSS_SELECTOR, "button").is_displayed()
    browser.run("arguments[0].scrollIntoView()", long_item[0])
    assert_fits(browser, "12-items-long-word-mobile")
