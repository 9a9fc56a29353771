"""The benchmark harness: wrk report parsing, ratio arithmetic, targets and the report."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sbcntrctl.bench import harness, report, tracingcpu, wrk
from sbcntrctl.bench.cli import BEGIN, END, ROOT, write

# They measure CPU per request, throughput and start-up times: dev.py test runs them alone.
# Left out by dev.py test --quick (tools: test_deploy_moto runs a moto server).
pytestmark = [pytest.mark.serial, pytest.mark.slow]

WRK_REPORT = """\
Running 4s test @ http://127.0.0.1:40000/v1/helloworld
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.52ms    1.10ms  25.01ms   90.12%
    Req/Sec     9.20k   412.55     9.81k    80.00%
  Latency Distribution
     50%    3.14ms
     75%    3.61ms
     90%    4.27ms
     99%    8.33ms
  36812 requests in 4.00s, 5.02MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   9201.77
Transfer/sec:      1.25MB
"""


def test_wrk_report_is_parsed() -> None:
    result = wrk.parse(WRK_REPORT)
    assert result.requests == 36812
    assert result.seconds == 4.0
    assert result.rps == 9201.77
    assert (result.p50_ms, result.p99_ms) == (3.14, 8.33)
    assert result.errors == 3
    assert result.non_2xx == 5


@pytest.mark.parametrize(
    ("value", "unit", "ms"), [("812.00", "us", 0.812), ("1.5", "ms", 1.5), ("2.00", "s", 2000.0)]
)
def test_wrk_units(value: str, unit: str, ms: float) -> None:
    assert wrk.to_ms(value, unit) == pytest.approx(ms)


def test_wrk_report_without_latency_is_refused() -> None:
    with pytest.raises(ValueError, match="not a wrk --latency report"):
        wrk.parse(WRK_REPORT.replace("99%", "98%"))


def sample(
    config: str, round_: int, rps: float, cpu: dict[str, float], **kw: Any
) -> dict[str, Any]:
    return {
        "config": config,
        "round": round_,
        "rps": rps,
        "p50_ms": kw.get("p50", 2.0),
        "p99_ms": kw.get("p99", 5.0),
        "requests": int(rps * 4),
        "errors": 0,
        "cpu_us_per_request": cpu,
        "rss_mb": kw.get("rss", dict.fromkeys(cpu, 60.0)),
    }


def test_ratios_are_taken_within_each_round() -> None:
    # Round 1 ran on a slow machine; same-round ratios stay 0.5 and 0.6.
    samples = [
        sample("bare-pair", 0, 2000, {"front": 300, "back": 150}),
        sample("pair-sampled", 0, 1000, {"front": 500, "back": 260}),
        sample("bare-pair", 1, 1000, {"front": 300, "back": 150}),
        sample("pair-sampled", 1, 600, {"front": 500, "back": 260}),
    ]
    assert report.same_round_ratio(samples, "pair-sampled", "bare-pair") == pytest.approx(0.55)
    assert report.same_round_ratio(samples, "pair-sampled", "nothing") is None


def full_results() -> dict[str, Any]:
    cpu_pair_off = {"front": 400.0, "back": 200.0}
    cpu_pair_on = {"front": 560.0, "back": 300.0}
    samples = []
    for r in range(3):
        samples += [
            sample("raw-asgi", r, 30000, {"front": 30}),
            sample("fastapi", r, 9000, {"front": 100}),
            sample("backend-off", r, 7000, {"front": 130}),
            sample("backend-default", r, 6500, {"front": 140}),
            sample("backend-sampled", r, 5000, {"front": 250}, p50=2.0, p99=7.0),
            sample("bare-pair", r, 2000, {"front": 300, "back": 150}),
            sample("bare-pair-routers", r, 1800, {"front": 320, "back": 160}),
            sample("pair-off", r, 1500, cpu_pair_off),
            sample("pair-default", r, 1350, cpu_pair_off),
            sample("pair-sampled", r, 1100, cpu_pair_on, rss={"front": 95.0, "back": 80.0}),
        ]
    return {
        "configs": [{"name": s["config"], "description": s["config"]} for s in samples[:10]],
        "samples": samples,
        "startup": {"backend": {"ready_s": 0.8, "sigterm_to_exit_s": 0.2}},
    }


def test_targets_report_each_value_and_verdict() -> None:
    results = full_results()
    found = {t.name: t for t in report.targets(report.summarize(results), results["startup"])}
    assert found["pair-sampled / bare-pair (throughput)"].value == 0.55
    assert found["pair-sampled / bare-pair (throughput)"].met is True
    assert found["pair-default / pair-off (throughput)"].value == 0.9
    # Everything on against the bare pair.
    assert found["pair-default / bare-pair (throughput)"].value == 0.675
    assert found["pair-default / bare-pair (throughput)"].met is False
    backend_cpu = found["logging + tracing CPU per request, backend alone"]
    assert (backend_cpu.value, backend_cpu.met) == (120.0, True)
    frontend_cpu = found["logging + tracing CPU per request, frontend in pair"]
    assert (frontend_cpu.value, frontend_cpu.met) == (160.0, False)
    assert frontend_cpu.verdict == "MISSED"
    spread = found["p99 / p50, backend-sampled"]
    assert (spread.value, spread.met) == (3.5, False)
    rss = found["RSS per service after the run"]
    assert (rss.value, rss.met) == (95.0, False)
    assert found["start-up to ready, backend"].met is True


# The performance targets of the project, each by its row in the report.
TARGETS = (
    "pair-off / bare-pair (throughput)",
    "pair-default / pair-off (throughput)",
    "pair-default / bare-pair (throughput)",
    "pair-sampled / bare-pair (throughput)",
    "logging + tracing CPU per request, frontend in pair",
    "p99 / p50, pair-sampled",
    "OpenTelemetry / X-Ray CPU per request, pair-otel-sampled front",
    "OpenTelemetry / X-Ray CPU per request, backend-otel-sampled front",
    "RSS per service after the run",
    "RSS per service after the long run (pair-default, 100480 requests)",
    "RSS growth per service over the long run's second half (pair-default, 100480 requests)",
)
LONG_RUN_SIZE, LONG_RUN_GROWTH = TARGETS[-2], TARGETS[-1]


def soak_result(middle: dict[str, float], end: dict[str, float]) -> dict[str, Any]:
    return {
        "config": "pair-default",
        "connections": 32,
        "middle": {"requests": 50210, "connections_opened": 544, "rss_mb": middle},
        "end": {"requests": 100480, "connections_opened": 1088, "rss_mb": end},
    }


def with_otel_sampled_rows(results: dict[str, Any]) -> dict[str, Any]:
    for name in ("backend-otel-sampled", "pair-otel-sampled"):
        results["configs"].append({"name": name, "description": name})
    for r in range(3):
        results["samples"] += [
            sample("backend-otel-sampled", r, 5200, {"front": 240.0}),
            sample("pair-otel-sampled", r, 1050, {"front": 570.0, "back": 290.0}),
        ]
    return results


def test_every_target_is_in_the_table_with_its_limit() -> None:
    results = with_otel_sampled_rows(full_results())
    results["soak"] = soak_result({"front": 80.5, "back": 88.1}, {"front": 80.8, "back": 88.1})
    found = {t.name: t for t in report.targets(report.summarize(results), {}, 1.0, results["soak"])}
    assert set(TARGETS) <= found.keys()
    limits = {name: found[name].limit for name in TARGETS}
    assert limits["pair-off / bare-pair (throughput)"] == ">= 0.75x"
    assert limits["pair-default / pair-off (throughput)"] == ">= 0.85x"
    assert limits["pair-sampled / bare-pair (throughput)"] == ">= 0.5x"
    assert limits["logging + tracing CPU per request, frontend in pair"] == "<= 130 µs"
    assert limits["p99 / p50, pair-sampled"] == "<= 3x"
    assert limits["OpenTelemetry / X-Ray CPU per request, pair-otel-sampled front"] == "<= 1x"
    assert limits["RSS per service after the run"] == "<= 90 MB"
    assert limits[LONG_RUN_SIZE] == "<= 90 MB"
    assert limits[LONG_RUN_GROWTH] == "<= 0.5 MB"
    # Every target was measured by this run.
    assert all(found[name].met is not None for name in TARGETS)


def test_pair_off_against_the_bare_pair_is_met_at_three_quarters() -> None:
    results = full_results()  # pair-off 1500 against bare-pair 2000 in every round
    name = "pair-off / bare-pair (throughput)"
    found = {t.name: t for t in report.targets(report.summarize(results), {})}
    assert (found[name].value, found[name].verdict) == (0.75, "met")
    for sample_ in results["samples"]:
        if sample_["config"] == "pair-off":
            sample_["rps"] = 1480
    found = {t.name: t for t in report.targets(report.summarize(results), {})}
    assert (found[name].value, found[name].verdict) == (0.74, "MISSED")


@pytest.mark.parametrize(
    ("middle", "end", "after", "growth", "verdicts"),
    [
        # Flat, under the limit.
        ({"front": 80.5, "back": 88.4}, {"front": 80.8, "back": 88.4}, 88.4, 0.3, ("met", "met")),
        # Under 90 MB but growing: 0.7 MB over the second half is a leak.
        (
            {"front": 70.0, "back": 80.0},
            {"front": 70.7, "back": 80.1},
            80.1,
            0.7,
            ("met", "MISSED"),
        ),
        # Flat but above 90 MB.
        (
            {"front": 80.0, "back": 91.0},
            {"front": 80.0, "back": 91.0},
            91.0,
            0.0,
            ("MISSED", "met"),
        ),
    ],
)
def test_memory_after_the_long_run_is_judged_on_size_and_growth(
    middle: dict[str, float],
    end: dict[str, float],
    after: float,
    growth: float,
    verdicts: tuple[str, str],
) -> None:
    found = {
        t.name: t
        for t in report.targets(
            report.summarize(full_results()), {}, None, soak_result(middle, end)
        )
    }
    size, flat = found[LONG_RUN_SIZE], found[LONG_RUN_GROWTH]
    assert (size.value, flat.value) == (after, growth)
    assert (size.verdict, flat.verdict) == verdicts


def test_a_run_without_the_long_run_does_not_judge_it() -> None:
    found = report.targets(report.summarize(full_results()), {})
    long_run = [t for t in found if "long run" in t.name]
    assert len(long_run) == 2
    assert all(t.verdict == "not measured" for t in long_run)


def test_quick_run_marks_what_it_did_not_measure() -> None:
    results = full_results()
    results["samples"] = [s for s in results["samples"] if s["config"].startswith("backend")]
    found = {t.name: t for t in report.targets(report.summarize(results), {})}
    assert found["pair-sampled / bare-pair (throughput)"].verdict == "not measured"


def test_markdown_table_has_a_row_per_configuration_and_target() -> None:
    results = full_results()
    text = report.markdown(results, {"date": "today", "machine": "m", "command": "c"})
    names = {c["name"] for c in results["configs"]}
    rows = [
        line.split("|")[1].strip().split(":")[0]
        for line in text.splitlines()
        if line.startswith("| ")
    ]
    assert sorted(r for r in rows if r in names) == sorted(names)
    assert "| pair-sampled: pair-sampled | 1100 |" in text
    assert "0.55 x bare-pair" in text
    assert (
        "| logging + tracing CPU per request, frontend in pair | <= 130 µs | 160.0 | MISSED |"
        in text
    )


def test_the_defaults_cost_is_printed_in_microseconds_per_pair_request() -> None:
    results = full_results()
    for sample_ in results["samples"]:
        if sample_["config"] == "pair-default":
            sample_["cpu_us_per_request"] = {"front": 455.5, "back": 262.0}
    text = report.markdown(results, {"date": "today"})
    line = (
        "The defaults (INFO access lines, default sampling) add 117.5 µs of CPU per pair "
        "request (pair-default against pair-off): frontend 55.5, backend 62.0."
    )
    # Below the configuration table, above the targets.
    assert text.index("| pair-sampled: ") < text.index(line) < text.index("| target |")
    # A run without both pair rows (--only) prints no such line.
    for left_out in ("pair-off", "pair-default"):
        partial = dict(results, samples=[s for s in results["samples"] if s["config"] != left_out])
        assert "The defaults" not in report.markdown(partial, {"date": "today"})


def test_write_replaces_only_the_bench_section(tmp_path: Path) -> None:
    output = tmp_path / "performance.md"
    output.write_text(f"# Performance\n\nanalysis above\n\n{BEGIN}\nold\n{END}\n\nanalysis below\n")
    write(output, "new table\n", {"samples": []})
    text = output.read_text()
    assert "old" not in text
    assert "new table" in text
    assert text.startswith("# Performance\n\nanalysis above")
    assert text.endswith("analysis below\n")
    assert json.loads(output.with_suffix(".json").read_text()) == {"samples": []}


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed")
def test_quick_run_produces_a_well_formed_report(tmp_path: Path) -> None:

    from sbcntrctl.bench.cli import main as bench_main  # noqa: PLC0415

    output = tmp_path / "perf.md"
    argv, sys.argv = (
        sys.argv,
        [
            "sbcntrctl bench",
            "--quick",
            "--soak-requests",
            "2000",
            "--output",
            str(output),
        ],
    )
    try:
        with pytest.raises(SystemExit) as done:
            bench_main()
    finally:
        sys.argv = argv
    assert done.value.code == 0
    text = output.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| backend-")]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert float(cells[1]) > 0  # requests/s
        assert float(cells[2]) > 0  # p50
        assert cells[4].startswith("front ")
    assert "x backend-off" in text
    data = json.loads(output.with_suffix(".json").read_text())
    assert {s["config"] for s in data["samples"]} == {"backend-off", "backend-sampled"}
    assert data["startup"]["backend"]["ready_s"] > 0
    assert set(data["tracing_cpu_us"]) == {"xray-sdk", "otel"}
    # backend-sampled sent a segment per request, each read by the X-Ray
    # daemon's stand-in (warm-ups included); backend-off sent none.
    taken = data["sidecars_received"]
    sampled = [s for s in data["samples"] if s["config"] == "backend-sampled"]
    assert taken["backend-sampled"]["xray_datagrams"] >= sum(s["requests"] for s in sampled)
    assert taken["backend-sampled"]["xray_drops"] == 0
    assert taken["backend-off"]["xray_datagrams"] == 0
    for backend, on_path in data["tracing_request_path_us"].items():
        assert 0 < on_path <= data["tracing_cpu_us"][backend] * 1.05, backend
    # The long run: the pair started afresh, RSS read after each half.
    soak = data["soak"]
    assert soak["config"] == "pair-default"
    assert 1000 <= soak["middle"]["requests"] < soak["end"]["requests"]
    assert soak["end"]["requests"] >= 2000
    for point in ("middle", "end"):
        assert set(soak[point]["rss_mb"]) == {"front", "back"}
        assert all(mb > 10 for mb in soak[point]["rss_mb"].values())
    end = soak["end"]
    assert f"| end | {end['requests']} | {end['connections_opened']} |" in text
    assert f"RSS per service after the long run (pair-default, {soak['end']['requests']}" in text


def test_opentelemetry_rows_are_held_to_their_x_ray_rows() -> None:
    results = full_results()
    results["configs"] += [
        {"name": name, "description": name}
        for name in ("backend-otel-default", "pair-otel-sampled")
    ]
    for r in range(3):
        results["samples"] += [
            sample("backend-otel-default", r, 6600, {"front": 133.0}, rss={"front": 58.0}),
            sample(
                "pair-otel-sampled",
                r,
                1000,
                {"front": 602.0, "back": 300.0},
                rss={"front": 93.0, "back": 81.5},
            ),
        ]
    found = {t.name: t for t in report.targets(report.summarize(results), results["startup"])}
    faster = found["OpenTelemetry / X-Ray CPU per request, backend-otel-default front"]
    assert (faster.value, faster.met) == (0.95, True)
    slower = found["OpenTelemetry / X-Ray CPU per request, pair-otel-sampled front"]
    assert (slower.value, slower.met) == (1.075, False)
    assert found["OpenTelemetry / X-Ray CPU per request, pair-otel-sampled back"].met is True
    assert found["OpenTelemetry - X-Ray RSS, backend-otel-default front"].value == -2.0
    more_memory = found["OpenTelemetry - X-Ray RSS, pair-otel-sampled back"]
    assert (more_memory.value, more_memory.met) == (1.5, False)
    # A row without its X-Ray counterpart in the run is not compared.
    assert not any("backend-otel-sampled" in name for name in found)

    results["tracing_cpu_us"] = {"xray-sdk": 80.0, "otel": 120.0}
    results["tracing_request_path_us"] = {"xray-sdk": 80.0, "otel": 90.0}
    results["otlp_encoding_us"] = {
        "servicekit.otlp_wire": {"0": 4.0, "7": 9.5},
        "exporter": {"0": 13.0, "7": 33.0},
    }
    text = report.markdown(results, {"date": "today"})
    assert (
        "OTLP protobuf encoding per finished span (in process), 0 / 7 attributes: "
        "servicekit.otlp_wire 4.0 / 9.5 µs; exporter 13.0 / 33.0 µs." in text
    )
    assert "X-Ray SDK 80.0 µs, OpenTelemetry 120.0 µs (OpenTelemetry / X-Ray 1.5)" in text
    assert "On the request path: X-Ray SDK 80.0 µs, OpenTelemetry 90.0 µs" in text


def test_tracing_cost_is_measured_for_each_backend_in_process(tmp_path: Path) -> None:
    rules = harness.sample_all_rules_file(ROOT, tmp_path)
    with harness.start_sidecars(tmp_path) as sidecars:
        costs = harness.tracing_cost(sidecars, rules, runs=1, requests=300)
        received = sidecars.received()
    # Each backend sent what it traced to the sidecars' stand-in: the X-Ray
    # SDK a datagram per segment (warm-up and measured requests), OpenTelemetry
    # its batches over OTLP/HTTP.
    assert received["xray_datagrams"] >= 300 + tracingcpu.WARM_UP_REQUESTS, received
    assert received["otlp_exports"] >= 1, received
    assert set(costs) == {"cpu_us", "request_path_us"}
    assert set(costs["cpu_us"]) == set(costs["request_path_us"]) == {"xray-sdk", "otel"}
    # A sampled request's spans cost tens of µs on either path, never nothing.
    assert all(5 < us < 5000 for us in costs["cpu_us"].values()), costs
    # The request path is part of the whole (the X-Ray SDK sends on it: all of it).
    for backend, on_path in costs["request_path_us"].items():
        assert 0 < on_path <= costs["cpu_us"][backend] * 1.05, costs


def test_the_sidecars_stand_in_reads_every_datagram_and_answers_every_export(
    tmp_path: Path,
) -> None:
    """A datagram to a port nobody reads costs its sender an ICMP error instead."""
    with harness.start_sidecars(tmp_path) as sidecars:
        host, port = sidecars.xray_daemon_address.split(":")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for _ in range(50):
                udp.sendto(b'{"format": "json", "version": 1}\n{}', (host, int(port)))
        export = httpx.post(
            f"{sidecars.otlp_endpoint}/v1/traces",
            content=b"\x0a\x00",
            headers={"content-type": "application/x-protobuf"},
        )
        assert (export.status_code, export.content) == (200, b"")
        # An export to a wrong path is refused, not counted.
        assert httpx.post(f"{sidecars.otlp_endpoint}/v1/trace", content=b"").status_code == 404
        deadline = time.monotonic() + 5
        while sidecars.received()["xray_datagrams"] < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sidecars.received() == {"otlp_exports": 1, "xray_datagrams": 50, "xray_drops": 0}
        env = harness._process_env(harness.ProcessSpec("front", ()), 8080, None, sidecars)
        assert env["AWS_XRAY_DAEMON_ADDRESS"] == sidecars.xray_daemon_address
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == sidecars.otlp_endpoint
        process = sidecars.process
    # Stopped with the block.
    assert process.popen.poll() is not None


def test_the_sidecars_stand_in_that_cannot_bind_its_udp_port_never_becomes_ready(
    tmp_path: Path,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        env = {
            **os.environ,
            "PORT": str(harness._free_port()),
            "XRAY_DAEMON_PORT": str(taken.getsockname()[1]),
        }
        done = subprocess.run(
            [sys.executable, "-m", "sbcntrctl.bench.apps", "sidecars"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode != 0
    assert "Address already in use" in done.stderr


def test_otlp_encoding_cost_grows_with_the_attributes() -> None:
    costs = harness.otlp_encoding_cost(spans=128, repeats=10)
    assert set(costs) == {"servicekit.otlp_wire", "exporter"}
    for figures in costs.values():
        assert set(figures) == {"0", "3", "7"}
        assert 0 < figures["0"] < figures["7"]


def test_a_run_writes_a_scratch_file_unless_told_to_publish() -> None:
    """The tracked docs/performance.md changes only with --output naming it."""
    from sbcntrctl.__main__ import build_parser  # noqa: PLC0415

    default = build_parser().parse_args(["bench", "--quick"]).output
    assert ROOT / "docs" not in default.parents
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(default)], cwd=ROOT, check=False
    )  # 0: git ignores it
    assert ignored.returncode == 0
