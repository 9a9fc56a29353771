"""Shapes, thresholds, the audit and the capacity arithmetic, on made-up inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sbcntrctl.loadtest import audit, capacity, runinfo, shapes, steps
from sbcntrctl.loadtest.shapes import ShapeOptions, phases, tick, total_seconds
from sbcntrctl.loadtest.thresholds import RunFigures, Thresholds, missed

SBCNTRCTL = str(Path(sys.executable).parent / "sbcntrctl")


def ticks(options: ShapeOptions, until: float, every: float = 1.0) -> list[Any]:
    return [tick(t * every, options) for t in range(int(until / every))]


def test_steady_holds_the_target_rate_then_stops() -> None:
    options = ShapeOptions(shape="steady", target_rps=10, user_rps=0.5, duration=5)
    # 20 users at once (they spread their first requests over one think time)
    assert ticks(options, 5) == [(20, 20.0)] * 5
    assert tick(5, options) is None


def test_step_is_a_staircase_that_returns_to_its_baseline() -> None:
    options = ShapeOptions(shape="step", step_rps=5, user_rps=0.5, step_seconds=10, steps=3)
    users = [t[0] for t in ticks(options, 40, every=5)]
    assert users == [10, 10, 20, 20, 30, 30, 10, 10]
    assert tick(40, options) is None


def test_step_scales_its_steps_to_the_duration() -> None:
    options = ShapeOptions(shape="step", step_rps=5, user_rps=0.5, steps=3, duration=60)
    assert [(p.name, p.start, p.end) for p in phases(options)] == [
        ("step 1", 0, 15),
        ("step 2", 15, 30),
        ("step 3", 30, 45),
        ("baseline", 45, 60),
    ]
    assert total_seconds(options) == 60


def test_spike_bursts_and_returns() -> None:
    options = ShapeOptions(
        shape="spike", target_rps=10, user_rps=1, duration=90, spike_factor=5, spike_seconds=20
    )
    assert tick(0, options) == (10, 50.0)
    assert tick(35, options) == (50, 50.0)  # 35-55 s: the spike, all users at once
    assert tick(60, options) == (10, 50.0)  # back to the baseline at once
    assert tick(90, options) is None


def test_a_short_spike_run_still_ends_at_its_baseline() -> None:
    """30 s: a third of baseline, a third of spike, a third of baseline (not cut at the peak)."""
    options = ShapeOptions(shape="spike", target_rps=10, user_rps=1, duration=30, spike_factor=5)
    users = [t[0] for t in ticks(options, 30)]
    assert users == [10] * 10 + [50] * 10 + [10] * 10


def test_a_spike_that_leaves_no_baseline_is_refused() -> None:
    with pytest.raises(ValueError, match="--spike-seconds 30 leaves no baseline"):
        phases(ShapeOptions(shape="spike", duration=30, spike_seconds=30))


@pytest.mark.parametrize("shape", ["steady", "step", "spike", "soak"])
def test_every_shape_ends_at_its_baseline_rate(shape: str) -> None:
    options = ShapeOptions(shape=shape, target_rps=8, step_rps=8, duration=40)
    found = phases(options)
    assert found[-1].rps == found[0].rps == 8
    assert found[-1].end == 40


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ShapeOptions(shape="zigzag"), "unknown shape"),
        (ShapeOptions(user_rps=0), "--user-rps must be greater than 0"),
        (ShapeOptions(duration=-1), "--shape-duration must be greater than 0"),
        (ShapeOptions(shape="step", steps=0), "--steps must be at least 1"),
        (ShapeOptions(shape="spike", spike_factor=0.5), "--spike-factor must be at least 1"),
    ],
)
def test_bad_shape_options_are_refused(options: ShapeOptions, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tick(0, options)


def test_thresholds_report_each_miss() -> None:
    limits = Thresholds(max_error_ratio=0.01, max_p95_ms=200, max_p99_ms=400, min_rps=9)
    good = RunFigures(requests=1000, failures=5, p95_ms=150, p99_ms=300, rps=10)
    assert missed(good, limits) == []
    bad = RunFigures(requests=1000, failures=50, p95_ms=250, p99_ms=500, rps=8)
    problems = missed(bad, limits)
    assert len(problems) == 4
    assert problems[0].startswith("error ratio 0.0500")
    assert missed(RunFigures(0, 0, 0, 0, 0), limits) == ["no request was sent"]


AT = "2026-11-26T00:00:10.000Z"  # inside the run of summary(): 00:00:00 to 00:01:00


def rid(n: int, run: str = "r1") -> str:
    """A request id as the load test makes them: the run id and 16 hex digits."""
    return f"{run}-{n:016x}"


def access(
    service: str,
    request_id: str,
    method: str,
    path: str,
    status: int,
    level: str | None = None,
    **extra: Any,
) -> str:
    lvl = level or ("error" if status >= 500 else "warning" if status >= 400 else "info")
    record = {
        "timestamp": AT,
        "level": lvl,
        "service": service,
        "event": "request",
        "logger": "servicekit.access",
        "request_id": request_id,
        "method": method,
        "path": path,
        "status": status,
        **extra,
    }
    return json.dumps(record, separators=(",", ":"))  # as the services write them


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def page(request_id: str, trace: str = "1-00000000-000000000000000000000001") -> Any:
    front = [access("frontend", request_id, "GET", "/", 200, trace_id=trace)]
    back = [
        access("backend", request_id, "GET", "/v1/helloworld", 200),
        access("backend", request_id, "GET", "/v1/notifications/count", 200),
    ]
    return front, back


def summary(path: Path, sent: int, run_id: str = "r1") -> Path:
    body = {
        "run_id": run_id,
        "started_at": "2026-11-26T00:00:00.000+00:00",
        "ended_at": "2026-11-26T00:01:00.000+00:00",
        "requests": sent,
    }
    path.write_text(json.dumps(body))
    return path


def run_audit(
    tmp_path: Path, sent: int, front: list[str], back: list[str], **kwargs: Any
) -> audit.Report:
    return audit.audit(
        "r1",
        summary(tmp_path / "summary.json", sent),
        frontend_log=write(tmp_path / "f.log", front),
        backend_log=write(tmp_path / "b.log", back),
        **kwargs,
    )


def pages(count: int, run: str = "r1") -> tuple[list[str], list[str]]:
    front, back = [], []
    for n in range(count):
        f, b = page(rid(n, run))
        front += f
        back += b
    return front, back


def test_audit_passes_a_complete_run(tmp_path: Path) -> None:
    front, back = pages(3)
    report = run_audit(tmp_path, 3, front, back)
    assert report.ok, report.gaps


def test_audit_catches_a_missing_and_a_doubled_line(tmp_path: Path) -> None:
    f0, b0 = page(rid(0))
    f1, b1 = page(rid(1))
    front = f0 + f0 + f1  # request 0 logged twice; request 2 never logged
    back = b0 + b1[:1]  # request 1's second backend call lost
    report = run_audit(tmp_path, 3, front, back)
    assert report.gaps == {
        "frontend: requests without an access line": 1,
        "frontend: requests with more than one access line": 1,
        "backend: calls without an access line": 1,
    }
    assert not report.ok


def test_more_requests_logged_than_sent_is_a_gap(tmp_path: Path) -> None:
    """The figures are not the logs' run (or requests were cut before Locust counted them)."""
    front, back = pages(5)
    report = run_audit(tmp_path, 3, front, back)
    assert report.gaps == {"frontend: requests of the run Locust did not record": 2}


def test_the_summary_of_another_run_is_refused(tmp_path: Path) -> None:
    front, back = pages(3)
    other = summary(tmp_path / "other.json", 3, run_id="r2")
    with pytest.raises(audit.AuditInputError, match="summary of run 'r2', not of --run-id 'r1'"):
        audit.audit(
            "r1",
            other,
            frontend_log=write(tmp_path / "f.log", front),
            backend_log=write(tmp_path / "b.log", back),
        )


def test_a_file_that_is_not_a_summary_is_refused(tmp_path: Path) -> None:
    stats = write(tmp_path / "run_stats.csv", ["Type,Name,Request Count", ",Aggregated,3"])
    front, back = pages(3)
    with pytest.raises(audit.AuditInputError, match=r"not a summary\.json"):
        audit.audit(
            "r1",
            stats,
            frontend_log=write(tmp_path / "f.log", front),
            backend_log=write(tmp_path / "b.log", back),
        )


def test_a_run_id_used_twice_is_caught_by_the_time_window(tmp_path: Path) -> None:
    front, back = pages(3)
    earlier = [line.replace(AT, "2026-11-25T23:00:00.000Z") for line in pages(2)[0]]
    report = run_audit(tmp_path, 3, earlier + front, back)
    assert report.gaps == {"frontend: lines of this run id outside the run's time": 2}


def test_another_run_whose_id_starts_with_this_one_is_not_counted(tmp_path: Path) -> None:
    front, back = pages(3)
    other_front, other_back = pages(2, run="r1-b")
    report = run_audit(tmp_path, 3, front + other_front, back + other_back)
    assert report.ok, report.gaps


def test_a_combined_log_is_split_by_service(tmp_path: Path) -> None:
    lines = []
    for n in range(3):  # as `docker compose logs` interleaves them
        f, b = page(rid(n))
        lines += [b[0], *f, b[1]]
    combined = write(tmp_path / "both.log", lines)
    report = audit.audit("r1", summary(tmp_path / "s.json", 3), logs=[combined])
    assert report.ok, report.gaps
    assert report.frontend_lines == 3


def test_one_log_given_as_both_services_is_refused(tmp_path: Path) -> None:
    front, back = pages(3)
    combined = write(tmp_path / "both.log", front + back)
    with pytest.raises(audit.AuditInputError, match="given twice"):
        audit.audit(
            "r1", summary(tmp_path / "s.json", 3), frontend_log=combined, backend_log=combined
        )
    with pytest.raises(audit.AuditInputError, match="'backend' line in the --frontend-log"):
        audit.audit(
            "r1",
            summary(tmp_path / "s.json", 3),
            frontend_log=combined,
            backend_log=write(tmp_path / "b.log", back),
        )


def test_logs_without_one_service_are_refused(tmp_path: Path) -> None:
    front, _ = pages(3)
    with pytest.raises(audit.AuditInputError, match="no backend line"):
        audit.audit("r1", summary(tmp_path / "s.json", 3), logs=[write(tmp_path / "f.log", front)])


def test_audit_catches_errors_levels_and_broken_lines(tmp_path: Path) -> None:
    f, b = page(rid(0))
    front = [*f, access("frontend", rid(1), "GET", "/items", 502, level="warning"), "not json"]
    boom = {"service": "backend", "logger": "backend.app", "level": "error", "event": "boom"}
    back = [*b, json.dumps(boom, separators=(",", ":"))]
    report = run_audit(tmp_path, 2, front, back, allowed_errors=None)
    assert report.gaps["frontend: access lines at the wrong level"] == 1
    assert report.gaps["backend: error lines not caused on purpose"] == 1
    assert report.gaps["frontend: lines that are not JSON"] == 1
    # --allow-errors matches the line as the service wrote it (no space after the colon)
    allowed = run_audit(tmp_path, 2, front, back, allowed_errors='"event":"boom"')
    assert "backend: error lines not caused on purpose" not in allowed.gaps


def test_audit_catches_an_incomplete_trace(tmp_path: Path) -> None:
    trace = "1-00000000-000000000000000000000001"
    front, back = page(rid(0), trace)
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


def step_run(
    tmp_path: Path, times_ms: list[list[float]], failures: int = 0
) -> tuple[Path, Path, ShapeOptions]:
    """A step run as the locustfile records it: 10 s steps (and the closing baseline) at
    20 req/s more each, every request of step i taking one of ``times_ms[i]`` in turn,
    and a backend whose CPU is 2 ms per request."""
    options = ShapeOptions(shape="step", step_rps=20, steps=len(times_ms) - 1, step_seconds=10)
    started = 1_000_000.0
    bins = steps.SecondBins()
    cpu = 0.0
    with (tmp_path / "cpu.csv").open("w") as out:
        out.write("timestamp,name,cpu_seconds\n")
        for phase, of_phase in zip(phases(options), times_ms, strict=True):
            for second in range(int(phase.start), int(phase.end)):
                out.write(f"{started + second},backend,{cpu:.4f}\n")
                rate = int(phase.rps)
                for n in range(rate):
                    at = started + second + n / rate
                    bins.add(at, of_phase[(second * rate + n) % len(of_phase)], n < failures)
                cpu += 0.002 * rate
        out.write(f"{started + phases(options)[-1].end},backend,{cpu:.4f}\n")
    found = phases(options)
    rows = steps.summarize(bins, found, started, [shapes.users_for(p.rps, options) for p in found])
    steps.write_csv(tmp_path / "steps.csv", rows)
    return tmp_path / "steps.csv", tmp_path / "cpu.csv", options


def test_step_percentiles_are_locusts_over_the_steps_own_requests(tmp_path: Path) -> None:
    slow_tail = [20.0] * 9 + [1234.0]  # 10% of the requests take 1.2 s
    steps_csv, _, _ = step_run(tmp_path, [[10.0], slow_tail, [10.0]])
    rows = steps.read_csv(steps_csv)
    assert [r.name for r in rows] == ["step 1", "step 2", "baseline"]
    second = rows[1]
    # the measured part: the last 80% of the step (8 whole seconds at 40 req/s)
    assert (second.seconds, second.requests, second.rps) == (8.0, 320, 40.0)
    # Locust's own histogram of the same 320 requests (in a process of its own:
    # importing locust monkey-patches the interpreter)
    reference = subprocess.run(
        [
            sys.executable,
            "-c",
            "from locust.stats import RequestStats, StatsEntry\n"
            "entry = StatsEntry(RequestStats(), 'step 2', 'GET')\n"
            f"for n in range(320): entry.log({slow_tail}[n % 10], 0)\n"
            "print(*(entry.get_response_time_percentile(f) for f in (0.5, 0.95, 0.99)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    expected = [float(v) for v in reference.stdout.split()]
    assert [second.p50_ms, second.p95_ms, second.p99_ms] == expected
    assert second.p95_ms == 1200  # Locust's rounding of 1234 ms
    assert rows[0].p95_ms == rows[2].p95_ms == 10


def test_a_climb_late_in_a_step_shows_in_its_p95(tmp_path: Path) -> None:
    """The step's own requests decide: 6% slow ones at its end are above its p95."""
    climbing = [30.0] * 94 + [900.0] * 6
    steps_csv, _, _ = step_run(tmp_path, [[30.0], climbing, [30.0]])
    assert steps.read_csv(steps_csv)[1].p95_ms == 900


def test_capacity_arithmetic(tmp_path: Path) -> None:
    # 20 req/s then 40 req/s; the second misses the latency threshold.
    steps_csv, cpu_csv, _ = step_run(tmp_path, [[50.0], [900.0], [50.0]])
    found = capacity.read_steps(steps_csv, cpu_csv)
    assert [(s.name, s.users) for s in found] == [("step 1", 40), ("step 2", 80), ("baseline", 40)]
    best = capacity.sustained(found, max_p95_ms=500, max_error_ratio=0.01)
    assert best is not None
    assert best.name == "step 1"
    assert best.rps == pytest.approx(20)
    assert best.cpu_per_request("backend") == pytest.approx(0.002)
    assert not capacity.unsaturated(found, max_p95_ms=500, max_error_ratio=0.01)
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


def test_capacity_warns_when_the_top_step_still_passes(tmp_path: Path) -> None:
    steps_csv, cpu_csv, _ = step_run(tmp_path, [[50.0], [60.0], [50.0]])
    found = capacity.read_steps(steps_csv, cpu_csv)
    assert capacity.unsaturated(found, max_p95_ms=500, max_error_ratio=0.01)
    result = subprocess.run(
        [SBCNTRCTL, "capacity", "--steps", str(steps_csv), "--cpu", str(cpu_csv)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING: the top step still met the thresholds" in result.stdout
    assert "How: each step's rate, errors and percentiles come from the requests" in result.stdout


def test_errors_fail_a_step(tmp_path: Path) -> None:
    steps_csv, cpu_csv, _ = step_run(tmp_path, [[50.0], [50.0], [50.0]], failures=1)
    found = capacity.read_steps(steps_csv, cpu_csv)
    assert found[0].error_ratio == pytest.approx(1 / 20)
    assert capacity.sustained(found, max_p95_ms=500, max_error_ratio=0.01) is None


def test_sample_pids_take_several_pids_of_one_service() -> None:
    """As `pgrep` prints them: one per line (or joined with +); their CPU is added."""
    mine, parent = os.getpid(), os.getppid()
    assert runinfo.parse_pids(f"frontend={mine}\n{parent},backend={mine}") == {
        "frontend": [mine, parent],
        "backend": [mine],
    }
    assert runinfo.parse_pids(f"frontend={mine}+{parent}") == {"frontend": [mine, parent]}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("frontend", "'frontend' is not name=PID"),
        ("frontend=", "no PID for frontend"),
        ("frontend=12 backend=3", "is not name=PID"),
        ("", "no name=PID given"),
        ("frontend=999999999", "frontend=999999999: no such process"),
    ],
)
def test_bad_sample_pids_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        runinfo.parse_pids(spec)


def test_run_ids_must_fit_a_request_id_and_reports_go_to_a_folder_per_run() -> None:
    assert runinfo.check_run_id("steady-1") == "steady-1"
    with pytest.raises(ValueError, match="--run-id"):
        runinfo.check_run_id("my run")
    assert runinfo.report_dir("steady-1", "") == Path("reports/steady-1")
    assert runinfo.report_dir("steady-1", "elsewhere") == Path("elsewhere")


def test_segments_of_another_session_are_a_gap_and_junk_is_refused(tmp_path: Path) -> None:
    front, back = page(rid(0), "1-00000000-000000000000000000000001")
    other = {"name": "frontend", "trace_id": "1-00000000-00000000000000000000000f", "id": "f"}
    segments = write(tmp_path / "segments.jsonl", [json.dumps(other)])
    report = run_audit(tmp_path, 1, front, back, segments=segments)
    assert report.gaps == {"traces: no segment of this run's requests in the segments file": 1}
    with pytest.raises(audit.AuditInputError, match="not a segment document"):
        run_audit(tmp_path, 1, front, back, segments=write(tmp_path / "x", ["[]"]))


def test_the_verdict_says_whether_traces_were_checked(tmp_path: Path) -> None:
    front, back = pages(1)
    verdict = audit.render(run_audit(tmp_path, 1, front, back))
    assert "traces not checked: no --segments" in verdict


def test_workers_figures_merge_into_the_masters() -> None:
    """In a distributed run each worker sends its seconds; the master adds them up."""
    master, worker = steps.SecondBins(), steps.SecondBins()
    master.add(100.2, 10, failed=False)
    worker.add(100.7, 250, failed=True)
    worker.add(101.1, 12, failed=False)
    master.merge(json.loads(json.dumps(worker.take())))  # as Locust's report carries it
    assert worker.bins == {}
    assert (master.bins[100].requests, master.bins[100].failures) == (2, 1)
    assert master.bins[100].times == {10: 1, 250: 1}
    assert master.bins[101].requests == 1


def test_capacity_refuses_cpu_samples_of_another_run(tmp_path: Path) -> None:
    steps_csv, cpu_csv, _ = step_run(tmp_path, [[50.0], [60.0], [50.0]])
    header, *samples = cpu_csv.read_text().splitlines()
    an_hour_later = [header]
    for sample in samples:
        at, name, used = sample.split(",")
        an_hour_later.append(f"{float(at) + 3600},{name},{used}")
    cpu_csv.write_text("\n".join(an_hour_later) + "\n")
    result = subprocess.run(
        [SBCNTRCTL, "capacity", "--steps", str(steps_csv), "--cpu", str(cpu_csv)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "the backend samples do not cover step 1" in result.stderr
