"""A short, bounded Locust run against the real services, then the STEP3 audit.

Tracing samples every request into a UDP listener in the daemon's place, so
the audit also checks that every request formed a complete trace.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import StartService
from tests.integration.conftest import start_stack
from tests.support import ROOT, SegmentCollector, sample_all_rules

SMOKE_SECONDS = 15


def test_smoke_run_passes_thresholds_and_the_audit(start: StartService, tmp_path: Path) -> None:
    rules = tmp_path / "sample-all.json"
    rules.write_text(json.dumps(sample_all_rules()))
    reports = tmp_path / "report"
    with SegmentCollector() as collector:
        env = {"AWS_XRAY_DAEMON_ADDRESS": collector.address, "XRAY_SAMPLING_RULES": str(rules)}
        stack = start_stack(start, tmp_path, backend_env=env, frontend_env=env)
        bin_dir = Path(sys.executable).parent
        locust = subprocess.run(
            [
                str(bin_dir / "locust"),
                "-f",
                str(ROOT / "loadtest"),
                "--headless",
                "--host",
                stack.frontend.url,
                "--shape",
                "steady",
                "--target-rps",
                "10",
                "--shape-duration",
                str(SMOKE_SECONDS),
                "--run-id",
                "smoke",
                "--csv",
                str(reports / "smoke"),
                "--html",
                str(reports / "smoke.html"),
                "--report-dir",
                str(reports),
                "--only-summary",
                "--max-p95-ms",
                "1000",
                "--max-p99-ms",
                "2000",
                "--min-rps",
                "5",
            ],
            capture_output=True,
            text=True,
            timeout=SMOKE_SECONDS + 60,
            check=False,
        )
        assert locust.returncode == 0, locust.stdout[-3000:] + locust.stderr[-3000:]
        assert "PASS" in locust.stdout + locust.stderr
        stack.frontend.stop()
        stack.backend.stop()
        segments = tmp_path / "segments.jsonl"
        segments.write_text("".join(json.dumps(s) + "\n" for s in collector.segments))
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["requests"] >= SMOKE_SECONDS * 5
    assert (reports / "smoke_stats.csv").exists()
    assert (reports / "smoke.html").exists()
    audit = subprocess.run(
        [
            str(bin_dir / "sbcntrctl"),
            "audit",
            "--run-id",
            "smoke",
            "--stats",
            str(reports / "summary.json"),
            "--frontend-log",
            str(stack.frontend.stdout_path),
            "--backend-log",
            str(stack.backend.stdout_path),
            "--segments",
            str(segments),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "no gap" in audit.stdout
    assert f"traces: {summary['requests']}" in audit.stdout or "traces: " in audit.stdout


def test_audit_fails_when_a_line_is_lost(start: StartService, tmp_path: Path) -> None:
    """The same audit on logs with one frontend line removed reports the gap."""
    stack = start_stack(start, tmp_path)
    import httpx  # noqa: PLC0415

    for n in range(5):
        httpx.get(f"{stack.frontend.url}/", headers={"X-Request-Id": f"lost-{n}"})
    stack.frontend.stop()
    stack.backend.stop()
    lines = stack.frontend.stdout_path.read_text().splitlines()
    dropped = '"logger":"servicekit.access"'
    kept = [line for line in lines if not ('"request_id":"lost-3"' in line and dropped in line)]
    assert len(kept) == len(lines) - 1
    front = tmp_path / "front.log"
    front.write_text("\n".join(kept) + "\n")
    stats = tmp_path / "summary.json"
    stats.write_text(json.dumps({"requests": 5}))
    audit = subprocess.run(
        [
            str(Path(sys.executable).parent / "sbcntrctl"),
            "audit",
            "--run-id",
            "lost",
            "--stats",
            str(stats),
            "--frontend-log",
            str(front),
            "--backend-log",
            str(stack.backend.stdout_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert audit.returncode == 1
    assert "frontend: requests without an access line: 1" in audit.stdout
