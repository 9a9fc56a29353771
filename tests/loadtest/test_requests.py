"""What every request of a run carries, as a server receives it (the run's marks that
the audit and the services' logs rely on, and the bodies the services expect)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, ScriptedBackend

LOCUST = str(Path(sys.executable).parent / "locust")


def test_every_request_carries_the_run_marks_and_a_unique_request_id(tmp_path: Path) -> None:
    with ScriptedBackend([(200, b"{}")]) as server:
        result = subprocess.run(
            [
                *(LOCUST, "-f", str(ROOT / "loadtest"), "--headless", "--only-summary"),
                *("--host", server.url, "--run-id", "marks-1", "--shape-duration", "3"),
                *("--target-rps", "10", "--report-dir", str(tmp_path)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    # the script answers 200 where the plan expects 201 or 303: those count as failures
    assert "requests," in result.stdout, result.stderr[-3000:]
    assert len(server.requests) >= 8
    ids = []
    for (method, path, sent), body in zip(server.requests, server.bodies, strict=True):
        headers = {name.title(): value for name, value in sent.items()}  # case-insensitive
        assert headers["User-Agent"] == "sbcntr-loadtest/marks-1"
        assert headers["X-Load-Test-Run"] == "marks-1"
        assert re.fullmatch(r"marks-1-[0-9a-f]{16}", headers["X-Request-Id"])
        ids.append(headers["X-Request-Id"])
        if method == "POST" and path.startswith("/api/"):
            assert headers["Content-Type"] == "application/json"
            assert body.startswith(b'{"title": "marks-1 ')
        elif method == "POST" and path == "/items":
            assert headers["Content-Type"].startswith("application/x-www-form-urlencoded")
            assert body.startswith(b"title=marks-1+page+")
    assert len(set(ids)) == len(ids)
