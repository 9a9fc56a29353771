"""Short, bounded Locust runs against the real services, then the STEP3 audit.

The services send every request's segments to ``sbcntrctl xray-capture`` (the
local stand-in for the X-Ray daemon that loadtest/README.md documents), so
the audit also checks that every request formed a complete trace.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import StartService
from tests.integration.conftest import start_stack
from tests.support import ROOT, rules_file, sample_all_rules

# They measure request rates and CPU samples: dev.py test runs them alone.
# Left out by dev.py test --quick (loadtest: test_options runs Locust).
pytestmark = [pytest.mark.serial, pytest.mark.slow]

BIN = Path(sys.executable).parent
SMOKE_SECONDS = 10


def locust(host: str, reports: Path, run_id: str, seconds: int, *extra: str) -> str:
    """Run ``locust -f loadtest/`` headless; returns its output (exit status checked)."""
    result = subprocess.run(
        [
            str(BIN / "locust"),
            "-f",
            str(ROOT / "loadtest"),
            "--headless",
            "--host",
            host,
            "--run-id",
            run_id,
            "--shape-duration",
            str(seconds),
            "--report-dir",
            str(reports),
            "--only-summary",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


def sbcntrctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "sbcntrctl"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_steady_run_delivers_its_rate_and_passes_the_audit(
    start: StartService, tmp_path: Path
) -> None:
    rules = rules_file(tmp_path, sample_all_rules(), "sample-all.json")
    segments = tmp_path / "segments.jsonl"
    capture = subprocess.Popen(
        [str(BIN / "sbcntrctl"), "xray-capture", "--port", "0", "--out", str(segments)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert capture.stdout is not None
        port = capture.stdout.readline().split("127.0.0.1:")[1].split()[0]
        env = {"AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{port}", "XRAY_SAMPLING_RULES": str(rules)}
        stack = start_stack(start, tmp_path, backend_env=env, frontend_env=env)
        reports = tmp_path / "reports" / "smoke"
        output = locust(
            stack.frontend.url,
            reports,
            "smoke",
            SMOKE_SECONDS,
            *("--shape", "steady", "--target-rps", "10"),
            *("--max-p95-ms", "1000", "--max-p99-ms", "2000", "--min-rps", "9.8"),
            "--sample-pids",
            f"frontend={stack.frontend.process.pid},backend={stack.backend.process.pid}",
        )
        assert "PASS" in output
        stack.frontend.stop()
        stack.backend.stop()
    finally:
        capture.send_signal(signal.SIGTERM)
        capture.communicate(timeout=10)
    summary = json.loads((reports / "summary.json").read_text())
    print(f"steady 10 req/s for {SMOKE_SECONDS} s: {summary['rps']:.2f} req/s")
    assert 9.8 <= summary["rps"] <= 10.2  # the configured rate, +-2%
    (phase,) = (reports / "steps.csv").read_text().splitlines()[1:]
    assert phase.startswith("0,steady,10.0,20,")
    # the CPU samples cover the run to its end (a last one when it stops)
    sizing = sbcntrctl(
        *("capacity", "--steps", str(reports / "steps.csv"), "--cpu", str(reports / "cpu.csv"))
    )
    assert sizing.returncode == 0, sizing.stdout + sizing.stderr
    assert "steady:   20 users," in sizing.stdout
    front, back = stack.frontend.stdout_path, stack.backend.stdout_path
    audit = sbcntrctl(
        *("audit", "--run-id", "smoke", "--stats", str(reports / "summary.json")),
        *("--frontend-log", str(front), "--backend-log", str(back), "--segments", str(segments)),
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "no gap" in audit.stdout
    assert f"traces: {summary['requests']} of {summary['requests']} requests" in audit.stdout
    # the same logs as one combined file, as `docker compose logs` writes them
    combined = tmp_path / "combined.log"
    combined.write_text(front.read_text() + back.read_text())
    audit = sbcntrctl(
        *("audit", "--run-id", "smoke", "--stats", str(reports / "summary.json")),
        *("--log", str(combined)),
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    # the rows the run wrote are marked, and removed without touching the others
    database = str(tmp_path / "stack.sqlite3")
    counted = sbcntrctl("loadtest-rows", "--database", database, "--run-id", "smoke")
    assert counted.returncode == 0, counted.stderr
    items, notifications = (int(word) for word in counted.stdout.split() if word.isdigit())
    assert items > 0
    assert notifications > 0
    deleted = sbcntrctl("loadtest-rows", "--database", database, "--delete")
    assert deleted.stdout.startswith(f"{items} items, {notifications} notifications of load runs")
    with sqlite3.connect(database) as connection:
        left = connection.execute("SELECT count(*) FROM items").fetchone()[0]
    assert left == 3  # the seed items
    assert sbcntrctl("loadtest-rows", "--database", database).stdout.startswith("0 items, 0 not")
    # the combined file given as both logs is refused, not counted twice
    audit = sbcntrctl(
        *("audit", "--run-id", "smoke", "--stats", str(reports / "summary.json")),
        *("--frontend-log", str(combined), "--backend-log", str(combined)),
    )
    assert audit.returncode == 2
    assert "given twice" in audit.stderr


def test_the_run_waits_for_requests_in_flight_before_its_figures(
    start: StartService, tmp_path: Path
) -> None:
    """Every answer takes 1.5 s: users still waiting when the shape ends finish their
    request and Locust counts it, so the frontend logged exactly what Locust sent."""
    slow = {"FAULT_INJECTION_ENABLED": "true", "FAULT_LATENCY_MS": "1500"}
    off = {"AWS_XRAY_SDK_ENABLED": "false"}
    stack = start_stack(start, tmp_path, backend_env={**slow, **off}, frontend_env=off)
    reports = tmp_path / "reports" / "slow"
    locust(
        stack.frontend.url,
        reports,
        "slow",
        3,
        *("--shape", "steady", "--target-rps", "10", "--max-p95-ms", "5000"),
        *("--max-p99-ms", "5000"),
    )
    stack.frontend.stop()
    stack.backend.stop()
    audit = sbcntrctl(
        *("audit", "--run-id", "slow", "--stats", str(reports / "summary.json")),
        *("--frontend-log", str(stack.frontend.stdout_path)),
        *("--backend-log", str(stack.backend.stdout_path)),
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_audit_fails_when_a_line_is_lost(start: StartService, tmp_path: Path) -> None:
    """The audit on real logs with one frontend access line removed reports the gap."""
    import httpx  # noqa: PLC0415

    stack = start_stack(start, tmp_path)
    ids = [f"lost-{n:016x}" for n in range(5)]
    for request_id in ids:
        httpx.get(f"{stack.frontend.url}/", headers={"X-Request-Id": request_id})
    stack.frontend.stop()
    stack.backend.stop()
    lines = stack.frontend.stdout_path.read_text().splitlines()
    access = '"logger":"servicekit.access"'
    kept = [line for line in lines if not (f'"request_id":"{ids[3]}"' in line and access in line)]
    assert len(kept) == len(lines) - 1
    front = tmp_path / "front.log"
    front.write_text("\n".join(kept) + "\n")
    stats = tmp_path / "summary.json"
    first, last = json.loads(lines[0])["timestamp"], json.loads(lines[-1])["timestamp"]
    stats.write_text(
        json.dumps({"run_id": "lost", "started_at": first, "ended_at": last, "requests": 5})
    )
    audit = sbcntrctl(
        *("audit", "--run-id", "lost", "--stats", str(stats), "--frontend-log", str(front)),
        *("--backend-log", str(stack.backend.stdout_path)),
    )
    assert audit.returncode == 1
    assert "frontend: requests without an access line: 1" in audit.stdout


def test_a_fault_drill_fails_its_thresholds_and_passes_the_audit_with_allowed_errors(
    start: StartService, tmp_path: Path
) -> None:
    """Every API call of the backend fails: Locust reports each failure once (its
    message does not repeat the request's name) and exits 1; the audit passes once
    the drill's error lines are allowed, matched on the lines as written."""
    faults = {"FAULT_INJECTION_ENABLED": "true", "FAULT_ERROR_RATE": "1"}
    off = {"AWS_XRAY_SDK_ENABLED": "false"}
    stack = start_stack(start, tmp_path, backend_env={**faults, **off}, frontend_env=off)
    reports = tmp_path / "reports" / "drill"
    result = subprocess.run(
        [
            *(str(BIN / "locust"), "-f", str(ROOT / "loadtest"), "--headless"),
            *("--host", stack.frontend.url, "--run-id", "drill", "--shape-duration", "2"),
            *("--report-dir", str(reports), "--csv", str(reports / "locust"), "--only-summary"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "THRESHOLD MISSED: error ratio" in result.stdout
    with (reports / "locust_failures.csv").open() as handle:
        failures = list(csv.DictReader(handle))
    assert failures
    for row in failures:
        # Locust files failures under the request's method and name already
        assert re.fullmatch(r"CatchResponseError\('status 5\d\d, expected \d{3}'\)", row["Error"])
    stack.frontend.stop()
    stack.backend.stop()
    logs = ("--frontend-log", str(stack.frontend.stdout_path))
    logs += ("--backend-log", str(stack.backend.stdout_path))
    stats = ("--run-id", "drill", "--stats", str(reports / "summary.json"))
    refused = sbcntrctl("audit", *stats, *logs)
    assert refused.returncode == 1
    assert "error lines not caused on purpose" in refused.stdout
    allowed = sbcntrctl("audit", *stats, *logs, "--allow-errors", r'"status":5\d\d')
    assert allowed.returncode == 0, allowed.stdout
