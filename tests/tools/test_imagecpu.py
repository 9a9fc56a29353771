"""tools/src/sbcntrctl/bench/imagecpu.py runs as it does in an image: a script on stdin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, base_env, free_port

SCRIPT = ROOT / "tools" / "src" / "sbcntrctl" / "bench" / "imagecpu.py"


@pytest.mark.slow
@pytest.mark.parametrize("service", ["backend", "frontend"])
def test_measures_start_up_and_health_check_cpu(service: str, tmp_path: Path) -> None:
    env = base_env(
        HOST="127.0.0.1",
        PORT=str(free_port()),
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/backend.sqlite3",
        BACKEND_URL=f"http://127.0.0.1:{free_port()}",
        AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{free_port()}",
    )
    result = subprocess.run(
        [sys.executable, "-", service, "1", "2"],
        stdin=SCRIPT.open("rb"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    figures = json.loads(result.stdout)
    assert figures["service"] == service
    assert (figures["runs"], figures["checks_per_run"]) == (1, 2)
    # A start-up imports FastAPI and more: more CPU than one health check.
    assert figures["startup_cpu_seconds"] > figures["healthcheck_cpu_seconds"] > 0
