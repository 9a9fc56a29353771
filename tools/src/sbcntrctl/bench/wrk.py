"""Running wrk and reading its report."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_LATENCY_LINE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.M)
_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.M)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)", re.M)


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured; latencies in milliseconds."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx: int


def to_ms(value: str, unit: str) -> float:
    """A wrk duration (``812.00us``, ``1.20ms``, ``2.00s``) in milliseconds."""
    return float(value) * _UNITS[unit]


def parse(output: str) -> WrkResult:
    """Parse the report of ``wrk --latency``; raise ValueError when a figure is missing."""
    latencies = {pct: to_ms(v, u) for pct, v, u in _LATENCY_LINE.findall(output)}
    requests = _REQUESTS.search(output)
    rps = _RPS.search(output)
    if requests is None or rps is None or "50" not in latencies or "99" not in latencies:
        msg = f"not a wrk --latency report:\n{output}"
        raise ValueError(msg)
    errors = _ERRORS.search(output)
    non_2xx = _NON_2XX.search(output)
    return WrkResult(
        requests=int(requests.group(1)),
        seconds=to_ms(requests.group(2), requests.group(3)) / 1000,
        rps=float(rps.group(1)),
        p50_ms=latencies["50"],
        p99_ms=latencies["99"],
        errors=sum(int(n) for n in errors.groups()) if errors else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def ensure_wrk() -> str:
    """The wrk executable; installed from Debian's packages when missing and allowed."""
    found = shutil.which("wrk")
    if found:
        return found
    if shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
        if not found:
            subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True
            )
            found = shutil.which("wrk")
    if not found:
        msg = "wrk is not installed and could not be installed (apt-get install wrk)"
        raise RuntimeError(msg)
    return found


def run(
    wrk: str,
    url: str,
    *,
    seconds: float,
    connections: int,
    cpu: int | None,
) -> WrkResult:
    """One wrk run against ``url``, pinned to ``cpu`` when given."""
    command = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", url]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 30)
    return parse(done.stdout)
