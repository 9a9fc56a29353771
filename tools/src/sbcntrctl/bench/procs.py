"""Processes under test: start, readiness, CPU time and memory from /proc."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rss_mb(pid: int) -> float:
    """Resident set size in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Process:
    name: str
    port: int
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 30) -> float:
        """SIGTERM; return seconds to exit (killed after ``timeout``)."""
        start = time.perf_counter()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return time.perf_counter() - start


def spawn(
    name: str,
    command: list[str],
    port: int,
    env: dict[str, str],
    cwd: Path,
    cpu: int | None,
    log: Path,
) -> Process:
    """Start ``command`` (pinned to ``cpu`` when given) with its output to ``log``."""
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    with log.open("ab") as out:
        popen = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    return Process(name, port, popen)


def wait_ready(
    process: Process, started: float, path: str = "/readyz", timeout: float = 30
) -> float:
    """Poll until ``path`` answers 200; return seconds since ``started`` (a perf_counter)."""
    url = f"http://127.0.0.1:{process.port}{path}"
    start = started
    with httpx.Client(timeout=1) as client:
        while time.perf_counter() - start < timeout:
            if process.popen.poll() is not None:
                msg = f"{process.name} exited with {process.popen.returncode} during start-up"
                raise RuntimeError(msg)
            try:
                if client.get(url).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
    msg = f"{process.name} not ready at {url} within {timeout}s"
    raise RuntimeError(msg)
