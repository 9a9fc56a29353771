"""``python3 dev.py up`` as a newcomer runs it: real processes, real ports, real signals."""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.support import ROOT, base_env, free_port, sqlite_url

# They measure start-up and stop times: dev.py test runs them alone.
pytestmark = pytest.mark.serial


class DevUp:
    """A running ``dev.py up`` on free ports; its console output collected line by line."""

    def __init__(self, tmp_path: Path, *args: str, frontend_port: int | None = None) -> None:
        self.frontend_port = frontend_port or free_port()
        self.backend_port = free_port()
        env = base_env(
            DATABASE_URL=sqlite_url(tmp_path / "up.sqlite3"), AWS_XRAY_SDK_ENABLED="false"
        )
        del env["SHUTDOWN_DRAIN_SECONDS"]  # what dev.py chooses is under test
        self.process = subprocess.Popen(
            [
                sys.executable,
                "dev.py",
                "up",
                "--frontend-port",
                str(self.frontend_port),
                "--backend-port",
                str(self.backend_port),
                *args,
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """The first console line matching ``pattern``, once printed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        msg = f"no line matching {pattern!r} in:\n{self.output[-4000:]}"
        raise AssertionError(msg)

    def pid_of(self, name: str) -> int:
        return int(self.wait_for(rf"{name} (?:ready|is back) at \S+ \(pid (\d+)\)").group(1))

    def press_enter(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"\n")
        self.process.stdin.flush()

    def wait(self, timeout: float = 30) -> int:
        status = self.process.wait(timeout)
        self._reader.join(5)
        return status

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.frontend_port}{path}"


@pytest.fixture
def dev_up(tmp_path: Path) -> Iterator[type[DevUp]]:
    """Start ``dev.py up``; whatever is still running is stopped after the test."""
    started: list[DevUp] = []

    def _start(*args: str, frontend_port: int | None = None) -> DevUp:
        run = DevUp(tmp_path, *args, frontend_port=frontend_port)
        started.append(run)
        return run

    yield _start  # type: ignore[misc]
    for run in started:
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGTERM)
            try:
                run.wait(40)
            except subprocess.TimeoutExpired:
                run.process.kill()
                run.wait()


def dev_pids(pid_file: Path) -> tuple[int, str]:
    """``dev.py pids FILE``: its exit status, and its output (stdout, else stderr)."""
    done = subprocess.run(
        [sys.executable, "dev.py", "pids", str(pid_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return done.returncode, (done.stdout or done.stderr).strip()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.quick
def test_refuses_to_start_on_a_taken_port_and_names_its_owner(dev_up: type[DevUp]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        started = time.monotonic()
        run = dev_up(frontend_port=taken)
        status = run.wait(60)
    assert status == 1
    assert time.monotonic() - started < 15  # at once, not after a start-up timeout
    assert f"port {taken} for the frontend is already in use" in run.output
    assert f"by pid {os.getpid()} " in run.output  # this test process holds it
    assert "Started server process" not in run.output  # nothing was started


@pytest.mark.slow
def test_console_log_files_and_a_killed_backend_restarted(
    dev_up: type[DevUp], tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    pid_file = tmp_path / "up.pids"
    run = dev_up("--log-dir", str(logs), "--pid-file", str(pid_file))
    backend_pid = run.pid_of("backend")
    frontend_pid = run.pid_of("frontend")
    assert str(logs / "backend.log") in run.wait_for("JSON logs go to").string
    # Locust's --sample-pids from the pid file, checked against who serves each port.
    run.wait_for(f"pids in {pid_file}")
    assert dev_pids(pid_file) == (0, f"frontend={frontend_pid},backend={backend_pid}")
    forged = tmp_path / "forged.pids"
    state = json.loads(pid_file.read_text())
    state["frontend"]["pid"] = os.getpid()  # alive, but not the frontend
    forged.write_text(json.dumps(state))
    status, error = dev_pids(forged)
    assert status == 1
    assert f"says the frontend is pid {os.getpid()}, but pid {frontend_pid} serves" in error

    assert httpx.get(run.url("/items")).status_code == 200
    # One short line per request per service, not the JSON.
    run.wait_for(r"^\d\d:\d\d:\d\d frontend GET /items 200 \d+\.\d ms$")
    run.wait_for(r"^\d\d:\d\d:\d\d backend  GET /v1/items 200 \d+\.\d ms$")
    assert not any(line.startswith("{") for line in run.lines)
    assert "Press CTRL+C" not in run.output

    os.kill(backend_pid, signal.SIGKILL)
    run.wait_for(r"backend exited with status -9 \(killed by SIGKILL\)\. The frontend stays up")
    assert httpx.get(run.url("/items"), timeout=10).status_code == 503
    assert _alive(frontend_pid)

    run.press_enter()
    new_backend_pid = int(run.wait_for(r"backend is back at \S+ \(pid (\d+)\)").group(1))
    assert new_backend_pid != backend_pid
    assert httpx.get(run.url("/items"), timeout=10).status_code == 200
    assert dev_pids(pid_file) == (0, f"frontend={frontend_pid},backend={new_backend_pid}")

    stopping = time.monotonic()
    run.process.send_signal(signal.SIGINT)
    assert run.wait() == 0
    assert time.monotonic() - stopping < 3  # no production drain delay (3 s) by default
    assert not _alive(new_backend_pid)
    assert not _alive(frontend_pid)
    assert not pid_file.exists()
    assert dev_pids(forged)[0] == 1  # nothing serves those URLs any more

    # Each service's JSON lines, from both backend processes, in its own file.
    for name in ("backend", "frontend"):
        records = [json.loads(line) for line in (logs / f"{name}.log").read_text().splitlines()]
        assert records
        assert {record["service"] for record in records} == {name}
    backend_starts = [
        r
        for r in map(json.loads, (logs / "backend.log").read_text().splitlines())
        if r["event"] == "started"
    ]
    assert [r["task"].rsplit(":", 1)[1] for r in backend_starts] == [
        str(backend_pid),
        str(new_backend_pid),
    ]


@pytest.mark.slow
def test_a_dead_frontend_stops_everything_with_its_status(dev_up: type[DevUp]) -> None:
    run = dev_up("--json")
    backend_pid = run.pid_of("backend")
    frontend_pid = run.pid_of("frontend")
    # --json: the services' lines as they are.
    started = [json.loads(line) for line in run.lines if line.startswith("{")]
    assert {"backend", "frontend"} <= {line["service"] for line in started}

    os.kill(frontend_pid, signal.SIGKILL)
    assert run.wait() == 1
    assert "frontend exited with status -9 (killed by SIGKILL); stopping" in run.output
    assert not _alive(backend_pid)


@pytest.mark.slow
def test_a_backend_that_cannot_start_is_reported(
    dev_up: type[DevUp], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_POOL_SIZE", "0")  # refused by the backend's settings
    run = dev_up()
    assert run.wait() == 1
    # The migration, which runs first with the same settings, is what refuses them.
    run.wait_for(r"python -m backend migrate --seed exited with status 2 \(invalid configuration")
    assert "frontend ready" not in run.output


def _load_dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "dev.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readiness_is_only_taken_from_the_process_it_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An earlier instance answering /readyz on the port is not mistaken for the new one."""
    dev = _load_dev()
    monkeypatch.setattr(dev, "STARTUP_TIMEOUT_SECONDS", 2)
    served_by = ["task=somehost:1"]

    class Readyz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("X-Served-By", served_by[0])
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Readyz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        service = dev.Supervised(
            "backend", server.server_address[1], {}, dev.Console(raw=True), None
        )
        service.process = ours
        with pytest.raises(dev.StartupError, match="was not ready"):
            service.wait_ready()
        served_by[0] = f"task=somehost:{ours.pid}"
        service.wait_ready()  # now the answer names the process it started
    finally:
        ours.kill()
        ours.wait()
        server.shutdown()
        server.server_close()
