"""``sbcntrctl xray-capture``: a real process on a loopback UDP port, stopped by real signals."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import StartService
from tests.support import rules_file, sample_all_rules

SBCNTRCTL = str(Path(sys.executable).parent / "sbcntrctl")
HEADER = b'{"format":"json","version":1}\n'


def start_capture(out: Path) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [SBCNTRCTL, "xray-capture", "--port", "0", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    assert "listening on 127.0.0.1:" in first, first + process.stderr.read()
    port = int(first.split("127.0.0.1:")[1].split()[0])
    return process, port


def stop(process: subprocess.Popen[str], signum: int) -> str:
    process.send_signal(signum)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    return out


def documents(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_every_datagram_sent_before_the_signal_is_written(tmp_path: Path, signum: int) -> None:
    out = tmp_path / "segments.jsonl"
    process, port = start_capture(out)
    count = 300
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for n in range(count):
            segment = {"name": "frontend", "id": f"{n:016x}", "trace_id": "1-0-0"}
            sender.sendto(HEADER + json.dumps(segment).encode(), ("127.0.0.1", port))
            if n % 50 == 0:  # UDP drops what a full receive buffer cannot hold
                time.sleep(0.01)
        sender.sendto(b"not a segment", ("127.0.0.1", port))
        sender.sendto(HEADER + b"[1]", ("127.0.0.1", port))
    summary = stop(process, signum)
    assert [d["id"] for d in documents(out)] == [f"{n:016x}" for n in range(count)]
    assert f"{count} segment documents written" in summary
    assert "2 datagrams refused" in summary


def test_a_port_in_use_is_refused_with_exit_2(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = subprocess.run(
            [SBCNTRCTL, "xray-capture", "--port", str(port), "--out", str(tmp_path / "s")],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.slow
def test_captures_the_services_traces(start: StartService, tmp_path: Path) -> None:
    """The services, pointed at the capture, leave one complete trace per request."""
    from tests.integration.conftest import start_stack  # noqa: PLC0415

    out = tmp_path / "segments.jsonl"
    process, port = start_capture(out)
    try:
        rules = rules_file(tmp_path, sample_all_rules(), "rules.json")
        env = {"AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{port}", "XRAY_SAMPLING_RULES": str(rules)}
        stack = start_stack(start, tmp_path, backend_env=env, frontend_env=env)
        answer = httpx.get(f"{stack.frontend.url}/", timeout=10)
        assert answer.status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(out.read_text().splitlines()) < 3:
            time.sleep(0.1)
    finally:
        stop(process, signal.SIGTERM)
    names = sorted(d["name"] for d in documents(out))
    assert names == ["backend", "backend", "frontend"]  # the home page calls the backend twice
