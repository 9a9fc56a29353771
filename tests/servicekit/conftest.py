"""The sample servicekit service, run as a real process."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, Service, base_env, free_port

SAMPLE = Path(__file__).with_name("sample_service.py")


def start_sample(tmp_path: Path, **env: str) -> Service:
    """Start ``sample_service.py`` on a free port with ``env``; wait until it is ready."""
    port = free_port()
    full_env = base_env(PORT=str(port), AWS_XRAY_SDK_ENABLED="false", **env)
    full_env["PYTHONPATH"] = str(ROOT)
    out, err = tmp_path / f"sample-{port}.stdout", tmp_path / f"sample-{port}.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(SAMPLE)], env=full_env, stdout=stdout, stderr=stderr, cwd=tmp_path
        )
    service = Service("sample", port, full_env, out, err, process)
    service.wait_ready()
    return service


@pytest.fixture
def sample(tmp_path: Path) -> Iterator[Service]:
    service = start_sample(tmp_path)
    yield service
    if service.process.poll() is None:
        service.stop(signal.SIGKILL)
