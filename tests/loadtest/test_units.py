"""Shapes, thresholds, the audit and the capacity arithmetic, on made-up inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from sbcntrctl.loadtest import audit, capacity
from sbcntrctl.loadtest.shapes import ShapeOptions, tick
from sbcntrctl.loadtest.thresholds import RunFigures, Thresholds, missed


def ticks(options: ShapeOptions, until: float, every: float = 1.0) -> list[Any]:
    return [tick(t * every, options) for t in range(int(until / every))]


def test_steady_holds_the_target_rate_then_stops() -> None:
    options = ShapeOptions(shape="steady", target_rps=10, user_rps=0.5, duration=5)
    assert ticks(options, 5) == [(20, 4.0)] * 5
    assert tick(5, options) is None


def test_step_is_a_staircase_that_stops() -> None:
    options = ShapeOptions(shape="step", step_rps=5, user_rps=0.5, step_seconds=10, steps=3)
    users = [t[0] for t in ticks(options, 30, every=5)]
    assert users == [10, 10, 20, 20, 30, 30]
    assert tick(30, options) is None


def test_spike_bursts_and_returns() -> None:
    options = ShapeOptions(
        shape="spike", target_rps=10, user_rps=1, duration=90, spike_factor=5, spike_seconds=20
    )
    assert tick(0, options) == (10, 10.0)
    assert tick(35, options) == (50, 50.0)
    assert tick(60, options) == (10, 10.0)
    assert tick(90, options) is None


def test_soak_is_a_long_steady_run() -> None:
    options = ShapeOptions(shape="soak", target_rps=4, user_rps=2, duration=3600)
    assert tick(3599, options) == (2, 1.0)
    assert tick(3600, options) is None


def test_unknown_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown shape"):
        tick(0, ShapeOptions(shape="zigzag"))


def test_thresholds_report_each_miss() -> None:
    limits = Thresholds(max_error_ratio=0.01, max_p95_ms=200, max_p99_ms=400, min_rps=9)
    good = RunFigures(requests=1000, failures=5, p95_ms=150, p99_ms=300, rps=10)
    assert missed(good, limits) == []
    bad = RunFigures(requests=1000, failures=50, p95_ms=250, p99_ms=500, rps=8)
    problems = missed(bad, limits)
    assert len(problems) == 4
    assert problems[0].startswith("error ratio 0.0500")
    assert missed(RunFigures(0, 0, 0, 0, 0), limits) == ["no request was sent"]


def access(
    service: str,
    rid: str,
    method: str,
    path: str,
    status: int,
    level: str | None = None,
    **extra: Any,
) -> str:
    lvl = level or ("error" if status >= 500 else "warning" if status >= 400 else "info")
    record = {
        "logger": "servicekit.access",
        "event": "request",
        "service": service,
        "level": lvl,
        "request_id": rid,
        "method": method,
        "path": path,
        "status": status,
        "timestamp": "2026-11-26T00:00:00.000Z",
        **extra,
    }
    return json.dumps(record)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def page(
    rid: str, trace: str = "1-00000000-000000000000000000000001"
) -> tuple[list[str], list[str]]:
    front = [access("frontend", rid, "GET", "/", 200, trace_id=trace)]
    back = [
        access("backend", rid, "GET", "/v1/helloworld", 200),
        access("backend", rid, "GET", "/v1/notifications/count", 200),
    ]
    return front, back


def run_audit(
    tmp_path: Path, sent: int, front: list[str], back: list[str], **kwargs: Any
) -> audit.Report:
    stats = tmp_path / "summary.json"
    stats.write_text(json.dumps({"requests": sent}))
    return audit.audit(
        "r1", stats, write(tmp_path / "f.log", front), write(tmp_path / "b.log", back), **kwargs
    )


def test_audit_passes_a_complete_run(tmp_path: Path) -> None:
    front, back = [], []
    for n in range(3):
        f, b = page(f"r1-{n}")
        front += f
        back += b
    report = run_audit(tmp_path, 3, front, back)
    assert report.ok, report.gaps


def test_audit_catches_a_missing_and_a_doubled_line(tmp_path: Path) -> None:
    f0, b0 = page("r1-0")
    f1, b1 = page("r1-1")
    front = f0 + f0 + f1  # r1-0 logged twice; r1-2 never logged
    back = b0 + b1[:1]  # r1-1's second backend call lost
    report = run_audit(tmp_path, 3, front, back)
    assert report.gaps == {
        "frontend: requests without an access line": 1,
        "frontend: requests with more than one access line": 1,
        "backend: calls without an access line": 1,
    }
    assert not report.ok


def test_audit_catches_errors_levels_and_broken_lines(tmp_path: Path) -> None:
    f, b = page("r1-0")
    front = [*f, access("frontend", "r1-1", "GET", "/items", 502, level="warning"), "not json"]
    back = [*b, json.dumps({"logger": "backend.app", "level": "error", "event": "boom"})]
    report = run_audit(tmp_path, 2, front, back, allowed_errors=None)
    assert report.gaps["frontend: access lines at the wrong level"] == 1
    assert report.gaps["backend: error lines not caused on purpose"] == 1
    assert report.gaps["frontend: lines that are not JSON"] == 1
    allowed = run_audit(tmp_path, 2, front, back, allowed_errors='"event": "boom"')
    assert "backend: error lines not caused on purpose" not in allowed.gaps


def test_audit_catches_an_incomplete_trace(tmp_path: Path) -> None:
    trace = "1-00000000-000000000000000000000001"
    front, back = page("r1-0", trace)
    segments = tmp_path / "segments.jsonl"
    frontend_segment = {
        "name": "frontend",
        "trace_id": trace,
        "id": "f1",
        "subsegments": [{"id": "s1", "namespace": "remote"}, {"id": "s2", "namespace": "remote"}],
    }
    backend_segment = {"name": "backend", "trace_id": trace, "id": "b1", "parent_id": "s1"}
    segments.write_text(json.dumps(frontend_segment) + "\n" + json.dumps(backend_segment) + "\n")
    report = run_audit(tmp_path, 1, front, back, segments=segments)
    assert report.gaps == {"traces: backend segments missing": 1}


def write_history(path: Path, rows: list[tuple[float, int, int, int, float]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "Timestamp",
                "User Count",
                "Type",
                "Name",
                "95%",
                "Total Request Count",
                "Total Failure Count",
            ]
        )
        for ts, users, total, failures, p95 in rows:
            writer.writerow([ts, users, "", "Aggregated", p95, total, failures])


def test_capacity_arithmetic(tmp_path: Path) -> None:
    # Two steps of 10 s: 20 req/s then 40 req/s; the second misses the latency threshold.
    rows = [(t, 10, 20 * t, 0, 50.0) for t in range(11)] + [
        (t, 20, 200 + 40 * (t - 10), 0, 900.0) for t in range(11, 22)
    ]
    write_history(tmp_path / "h.csv", rows)
    with (tmp_path / "cpu.csv").open("w") as out:
        out.write("timestamp,name,cpu_seconds\n")
        for t in range(22):
            out.write(f"{t},backend,{0.002 * 20 * t:.4f}\n")  # 2 ms of CPU per request
    steps = capacity.read_steps(tmp_path / "h.csv", tmp_path / "cpu.csv")
    assert [s.users for s in steps] == [10, 20]
    best = capacity.sustained(steps, max_p95_ms=500, max_error_ratio=0.01)
    assert best is not None
    assert best.users == 10
    assert best.rps == pytest.approx(20)
    assert best.cpu_per_request("backend") == pytest.approx(0.002)
    result = capacity.recommend("backend", best, rps=100, peak_factor=3, cpu_target=70)
    # 256 units x 70% / 2 ms = 87.5 req/s per task; two tasks carry 100 req/s.
    assert (result.task_cpu, result.task_memory) == (256, 512)
    assert result.rps_per_task == pytest.approx(87.5)
    assert (result.min_tasks, result.max_tasks) == (2, 4)  # ceil(300 / 87.5) = 4
    heavy = capacity.recommend("backend", best, rps=1000, peak_factor=3, cpu_target=70)
    # No size carries 1000 req/s on two tasks: 1 vCPU (350 req/s per task), more tasks.
    assert heavy.task_cpu == 1024
    assert heavy.rps_per_task == pytest.approx(350)
    assert (heavy.min_tasks, heavy.max_tasks) == (3, 9)
