"""The load generators' CPU and losses (sbcntrctl.loadtest.generators), and the
local processes' CPU sampler of ``locust -f loadtest/ --sample-pids``."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

from sbcntrctl.loadtest.generators import REPORT_KEY, Generators, reading
from tests.support import ROOT, free_port, stop_process

LOCUST = str(Path(sys.executable).parent / "locust")


def test_cpu_is_averaged_over_the_run_and_its_busiest_interval_kept() -> None:
    found = Generators()
    # 3 s intervals: 0.9, 2.85 (95%), 0.3 CPU seconds
    readings = [reading(100.0, 1.0), reading(103.0, 1.9), reading(106.0, 4.75)]
    found.report("w1", {REPORT_KEY: readings})
    found.report("w1", {REPORT_KEY: [reading(109.0, 5.05, final=True)]})
    (worker,) = found.by_name.values()
    assert round(worker.cpu_percent, 1) == round(100 * 4.05 / 9, 1)
    assert round(worker.peak_cpu_percent) == 95
    assert worker.final
    (warning,) = found.warnings()
    assert warning.startswith("load generator w1 ran at 95% CPU (above 90%)")
    assert found.summary(distributed=True) == {
        "workers": 1,
        "generators": [
            {"name": "w1", "cpu_percent": 45.0, "peak_cpu_percent": 95.0, "lost": False}
        ],
    }


def test_a_generator_below_the_limit_gets_no_warning_and_a_local_run_no_workers() -> None:
    found = Generators()
    for at, cpu in ((0.0, 0.0), (3.0, 2.7), (6.0, 5.4)):  # 90% exactly: at the limit
        found.take("local", reading(at, cpu))
    assert found.warnings() == []
    assert found.summary(distributed=False)["workers"] == 0


def test_a_lost_worker_is_a_problem_and_is_not_waited_for() -> None:
    found = Generators()
    found.report("w1", {REPORT_KEY: [reading(10.0, 0.0), reading(13.0, 0.3, final=True)]})
    found.report("w2", {REPORT_KEY: [reading(10.0, 0.0)]})
    found.report("w3", {REPORT_KEY: [reading(10.0, 0.0)]})
    found.get("w2").lost_at = 17.0
    assert [g.name for g in found.waiting_for()] == ["w3"]  # w1 is done, w2 will never report
    (problem,) = found.problems(started_at=10.0)
    assert problem.startswith("worker w2 lost 7 s into the run")
    assert [g["lost"] for g in found.summary(distributed=True)["generators"]] == [
        False,
        True,
        False,
    ]


def test_a_sampled_process_that_exits_is_reported_and_the_others_sampled_to_the_end(
    tmp_path: Path,
) -> None:
    """One sampled process ends during the run: a line says so, the other process is
    sampled to the end of the run, and cpu.csv is complete (closed with its last sample)."""
    short = subprocess.Popen(["sleep", "60"])
    long = subprocess.Popen(["sleep", "60"])
    try:
        run = subprocess.Popen(
            [
                *(LOCUST, "-f", str(ROOT / "loadtest"), "--headless", "--only-summary"),
                # nothing listens there: every request fails at once, the run goes on
                *("--host", f"http://127.0.0.1:{free_port()}", "--run-id", "pids"),
                *("--shape-duration", "4", "--target-rps", "2", "--report-dir", str(tmp_path)),
                *("--sample-pids", f"short={short.pid},long={long.pid}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert run.stdout is not None
        for line in run.stdout:
            if "All users spawned" in line:  # the run and its sampling have started
                break
        stop_process(short, 9, timeout=10)
        killed_at = time.time()
        output, _ = run.communicate(timeout=60)
    finally:
        stop_process(long, 15, timeout=10)
        stop_process(short, 15, timeout=10)
    assert run.returncode == 1, output[-3000:]  # every request failed
    assert f"sample-pids: short ({short.pid}) exited" in output
    with (tmp_path / "cpu.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    long_at = [float(r["timestamp"]) for r in rows if r["name"] == "long"]
    assert long_at[-1] - long_at[0] >= 4 - 1  # to the end of the 4 s run, not to short's exit
    assert long_at[-1] > killed_at + 2
    assert all(float(r["timestamp"]) <= killed_at for r in rows if r["name"] == "short")
