"""The pages in a real browser under their Content-Security-Policy, and a cross-site form.

Headless Chromium (Debian's) driven by selenium, against the real frontend and
backend processes: the pages render and work with no CSP violation in the
console, and a page served from another origin (another loopback port) that
auto-submits a form to the frontend is refused and changes nothing.
"""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import StartService
from tests.integration.conftest import Stack, start_stack

# Left out by dev.py test --quick (frontend: test_pages runs a real backend).
pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium that keeps its console log."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium import webdriver  # noqa: PLC0415 - only where the browser exists
    from selenium.webdriver.chrome.service import Service as DriverService  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--no-proxy-server",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def site(start: StartService, tmp_path: Any) -> Stack:
    env = {"AWS_XRAY_SDK_ENABLED": "false"}
    return start_stack(start, tmp_path, backend_env=env, frontend_env=env)


def csp_violations(driver: Any) -> list[str]:
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]
    ]


def test_pages_work_under_the_csp_without_violations(browser: Any, site: Stack) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    url = site.frontend.url
    for path in ("/", "/items", "/notifications", "/no-such-page"):
        browser.get(url + path)
        # The stylesheet applied: the header has the site's colour.
        header = browser.find_element(By.TAG_NAME, "header")
        assert header.value_of_css_property("background-color") == "rgba(35, 47, 62, 1)"
    browser.get(url + "/items")
    browser.find_element(By.ID, "title").send_keys("from the browser")
    browser.find_element(By.CSS_SELECTOR, "form.card button[type=submit]").click()
    # The click returns before the post/redirect/get completes: wait for the page.
    WebDriverWait(browser, 15).until(lambda d: "from the browser" in d.page_source)
    browser.get(url + "/notifications")
    browser.find_element(By.CSS_SELECTOR, "form[action='/notifications/read'] button").click()
    WebDriverWait(browser, 15).until(
        lambda _: httpx.get(f"{site.backend.url}/v1/notifications/count").json() == {"unread": 0}
    )
    assert csp_violations(browser) == []
    # The policy is in force: an inline script injected into the page does not run.
    browser.execute_script(
        "const s = document.createElement('script');"
        "s.textContent = 'window.inlineRan = true';"
        "document.body.appendChild(s);"
    )
    assert browser.execute_script("return window.inlineRan === true") is False
    assert csp_violations(browser)


class AttackerSite:
    """Another origin on loopback serving a page that auto-submits a form to the frontend."""

    def __init__(self, target: str) -> None:
        page = (
            "<!doctype html><html><body>"
            f'<form id="f" method="post" action="{target}/items">'
            '<input name="title" value="csrf-from-elsewhere"></form>'
            "<script>document.getElementById('f').submit()</script>"
            "</body></html>"
        ).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AttackerSite:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_cross_origin_auto_submitted_form_is_refused(browser: Any, site: Stack) -> None:
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    with AttackerSite(site.frontend.url) as attacker:
        browser.get(attacker.url)
        WebDriverWait(browser, 15).until(lambda d: d.current_url.startswith(site.frontend.url))
        WebDriverWait(browser, 15).until(lambda d: "Status 403" in d.page_source)
    titles = [item["title"] for item in httpx.get(f"{site.backend.url}/v1/items").json()["data"]]
    assert "csrf-from-elsewhere" not in titles
    refused = site.frontend.wait_for_lines(
        lambda line: (
            line.get("logger") == "servicekit.access"
            and line["method"] == "POST"
            and line["path"] == "/items"
        )
    )
    assert [line["status"] for line in refused] == [403]


def test_the_api_docs_render_offline_under_the_csp(browser: Any, site: Stack) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    for service, title in ((site.backend, "sbcntr backend"), (site.frontend, "sbcntr frontend")):
        browser.get(f"{service.url}/docs")
        WebDriverWait(browser, 20).until(
            lambda d, title=title: title in d.find_element(By.TAG_NAME, "body").text
        )
        assert browser.find_elements(By.CSS_SELECTOR, ".opblock")
    assert [entry["message"] for entry in browser.get_log("browser")] == []
