"""The profile grouping of `python -m sbcntrctl.bench.profile`."""

from __future__ import annotations

import cProfile
import subprocess
import sys
from pathlib import Path

from sbcntrctl.bench import profile
from servicekit.asgi import new_request_id


def test_functions_are_grouped_by_the_layer_they_belong_to() -> None:
    site = "/venv/lib/python3.11/site-packages"
    assert profile.layer_of("/repo/servicekit/src/servicekit/edge.py") == (
        "edge limits (servicekit.edge)"
    )
    assert profile.layer_of(f"{site}/structlog/_base.py").startswith("logging")
    assert profile.layer_of(f"{site}/aws_xray_sdk/core/recorder.py").startswith("tracing")
    assert profile.layer_of("/repo/servicekit/src/servicekit/health.py") == "servicekit, other"
    assert profile.layer_of(f"{site}/fastapi/routing.py") == "FastAPI, Starlette, pydantic"
    assert profile.layer_of("/repo/frontend/src/frontend/backend_client.py").startswith("service")
    assert profile.layer_of("~") == profile.NATIVE
    assert profile.layer_of(f"{site}/aiohttp/http_writer.py", "_write") == profile.SOCKET_WRITES
    assert profile.layer_of(f"{site}/aiohttp/http_writer.py", "write") == "aiohttp client"
    assert profile.layer_of("/usr/lib/python3.11/asyncio/events.py") == "asyncio, uvloop"
    assert profile.layer_of("/usr/lib/python3.11/copy.py") == profile.STANDARD_LIBRARY
    assert profile.layer_of(f"{site}/httpx/_models.py").startswith("httpx")
    assert profile.layer_of("/elsewhere/module.py") == profile.OTHER


def test_a_real_profile_sums_to_its_whole(tmp_path: Path) -> None:
    out = tmp_path / "run.prof"
    cProfile.runctx(
        "for _ in range(20000): new_request_id()", {"new_request_id": new_request_id}, {}, str(out)
    )
    done = subprocess.run(
        [sys.executable, "-m", "sbcntrctl.bench.profile", str(out), "20000"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line.split(" | ") for line in done.stdout.splitlines()[2:]]
    shares = {row[0].strip("| "): float(row[1].rstrip("%")) for row in rows[:-1]}
    assert "servicekit, other" in shares  # servicekit.asgi.new_request_id
    assert abs(sum(shares.values()) - 100) < 0.5
    assert rows[-1][0] == "| total"


def test_a_file_that_is_not_a_profile_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not a profile")
    done = subprocess.run(
        [sys.executable, "-m", "sbcntrctl.bench.profile", str(bad), "10"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "not a cProfile file" in done.stderr
