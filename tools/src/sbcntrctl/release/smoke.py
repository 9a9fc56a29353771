"""The smoke check after a deploy: the pages and the API answer, then a short load.

1. ``GET`` each page and the JSON API once: every answer must be 200.
2. A short steady Locust run (``loadtest/``) with its thresholds: error ratio,
   p95, and the rate it reached; Locust exits 1 when one is missed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from sbcntrctl.release.images import ReleaseError

PATHS = ("/", "/items", "/notifications", "/api/items", "/api/notifications/count")
LOADTEST_DIR = Path(__file__).resolve().parents[4] / "loadtest"


def check_pages(base_url: str, timeout: float = 10.0) -> list[str]:
    """One line per path; ReleaseError listing every path that did not answer 200."""
    lines, failed = [], []
    with httpx.Client(base_url=base_url, timeout=timeout, follow_redirects=False) as client:
        for path in PATHS:
            try:
                status = str(client.get(path).status_code)
            except httpx.HTTPError as exc:
                status = f"{type(exc).__name__}"
            lines.append(f"GET {path}: {status}")
            if status != "200":
                failed.append(f"{path} ({status})")
    if failed:
        msg = f"smoke check of {base_url} failed: {', '.join(failed)}"
        raise ReleaseError(msg)
    return lines


def locust_command(base_url: str, seconds: int, rps: float, report_dir: Path) -> list[str]:
    return [
        str(Path(sys.executable).with_name("locust")),
        "-f",
        str(LOADTEST_DIR),
        "--headless",
        "--host",
        base_url,
        "--shape",
        "steady",
        "--target-rps",
        f"{rps:g}",
        "--shape-duration",
        str(seconds),
        "--max-error-ratio",
        "0.01",
        "--max-p95-ms",
        "1000",
        "--report-dir",
        str(report_dir),
        "--only-summary",
    ]


def run_load(base_url: str, seconds: int, rps: float, report_dir: Path) -> int:
    """Locust's exit status: 0 when every threshold held."""
    report_dir.mkdir(parents=True, exist_ok=True)
    command = locust_command(base_url, seconds, rps, report_dir)
    return subprocess.run(command, check=False).returncode
