"""A real browser for page tests: Debian's Chromium, headless, driven by selenium.

Loaded as a pytest plugin by ``tests/conftest.py``, so any test can ask for
the ``browser`` fixture. It uses ``/usr/bin/chromium`` through
``/usr/bin/chromedriver`` (``CHROMIUM`` and ``CHROMEDRIVER`` override the
paths; ``python3 dev.py test`` installs both with apt where it can) and skips
the test, saying why, when either is missing.

Screenshots are test artifacts: they go to ``build/browser-artifacts/<test>/``
(``BROWSER_ARTIFACTS`` overrides the folder; git ignores ``build/``), and the
folder is printed at the end of the run.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", ROOT / "build" / "browser-artifacts"))
DESKTOP = (1280, 900)
MOBILE = (390, 844)  # a common phone's CSS pixels

_saved: list[Path] = []


def missing_browser() -> str | None:
    """Why no browser test can run here, or None when Chromium and its driver are present."""
    for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return f"{name} not found at {path} (Debian packages chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401, PLC0415 - only browser tests need it
    except ImportError:
        return "selenium is not installed"
    return None


class Browser:
    """One headless Chromium window, with what page tests measure."""

    def __init__(self, driver: Any, artifacts: Path) -> None:
        self.driver = driver
        self.artifacts = artifacts

    def open(self, url: str) -> None:
        self.driver.get(url)

    def follow(self, find: Callable[[], Any], timeout: float = 20) -> None:
        """Click the element ``find()`` returns; wait until the page it leads to is loaded.

        The element is looked up again if the page changed under it before the
        click was dispatched (Chromium then refuses the click, so nothing was
        sent twice).
        """
        from selenium.common.exceptions import (  # noqa: PLC0415
            StaleElementReferenceException,
            WebDriverException,
        )
        from selenium.webdriver.common.by import By  # noqa: PLC0415
        from selenium.webdriver.support.wait import WebDriverWait  # noqa: PLC0415

        for attempt in range(3):
            page = self.driver.find_element(By.TAG_NAME, "html")
            try:
                find().click()
                break
            except StaleElementReferenceException:
                pass
            except WebDriverException as exc:
                if "does not belong to the document" not in str(exc.msg) or attempt == 2:
                    raise

        def left(_: Any) -> bool:
            # The old page is gone; Chromium says so either way.
            try:
                page.is_enabled()
            except StaleElementReferenceException:
                return True
            except WebDriverException as exc:
                if "does not belong to the document" in str(exc.msg):
                    return True
                raise
            return False

        wait = WebDriverWait(self.driver, timeout)
        wait.until(left)
        wait.until(lambda driver: driver.execute_script("return document.readyState") == "complete")

    def desktop(self) -> None:
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        self.driver.set_window_size(*DESKTOP)

    def mobile(self) -> None:
        """A phone: narrow viewport, the page's viewport meta honoured, touch screen scale."""
        width, height = MOBILE
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True},
        )

    def run(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def horizontal_overflow(self) -> int:
        """How many CSS pixels the page is wider than its viewport (0: no sideways scroll)."""
        return int(
            self.run(
                "const e = document.documentElement;"
                "return Math.max(e.scrollWidth, document.body.scrollWidth) - e.clientWidth;"
            )
        )

    def outside_viewport(self, css_selector: str) -> list[str]:
        """The elements matching ``css_selector`` whose right edge is past the viewport's."""
        return list(
            self.run(
                "return [...document.querySelectorAll(arguments[0])]"
                ".filter(e => e.getBoundingClientRect().right"
                " > document.documentElement.clientWidth + 0.5)"
                ".map(e => e.outerHTML.slice(0, 120));",
                css_selector,
            )
        )

    def console_errors(self) -> list[str]:
        """Errors the page logged since the last call (failed loads, script errors, CSP)."""
        return [
            entry["message"]
            for entry in self.driver.get_log("browser")
            if entry.get("level") == "SEVERE"
        ]

    def screenshot(self, name: str) -> Path:
        """Save the whole page as ``<artifacts>/<name>.png``; its path."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        width, height = self.run(
            "const e = document.documentElement; return [e.scrollWidth, e.scrollHeight];"
        )
        # The whole page, as wide and tall as it is, in one picture.
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        _saved.append(path)
        return path


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
    """A headless Chromium (desktop size to start with); skipped when none is installed."""
    reason = missing_browser()
    if reason is not None:
        pytest.skip(f"browser tests need Chromium: {reason}")
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests may run as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--lang=en-GB",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The pages show times in the reader's zone: make it one that is not UTC.
    service = Service(CHROMEDRIVER, env={**os.environ, "TZ": "Asia/Tokyo"})
    driver = webdriver.Chrome(options=options, service=service)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    try:
        yield Browser(driver, ARTIFACTS / name)
    finally:
        driver.quit()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _saved:
        folders = sorted({str(path.parent) for path in _saved})
        terminalreporter.write_line(f"browser screenshots ({len(_saved)}): {', '.join(folders)}")
