"""``sbcntrctl audit`` and ``sbcntrctl capacity``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sbcntrctl.loadtest import audit, capacity


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-id", required=True)
    parser.add_argument(
        "--stats",
        type=Path,
        required=True,
        help="summary.json from --report-dir (exact), or Locust's <prefix>_stats.csv",
    )
    parser.add_argument("--frontend-log", type=Path, required=True)
    parser.add_argument("--backend-log", type=Path, required=True)
    parser.add_argument("--segments", type=Path, help="captured X-Ray segments, one JSON per line")
    parser.add_argument("--allow-errors", help="regex of error lines the run caused on purpose")


def run_audit(args: argparse.Namespace) -> int:
    report = audit.audit(
        args.run_id,
        args.stats,
        args.frontend_log,
        args.backend_log,
        args.segments,
        args.allow_errors,
    )
    print(audit.render(report))
    return 0 if report.ok else 1


def add_capacity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--history", type=Path, required=True, help="Locust's <prefix>_stats_history.csv"
    )
    parser.add_argument(
        "--cpu", type=Path, required=True, help="cpu.csv written with --sample-pids"
    )
    parser.add_argument("--rps", type=float, default=10.0, help="business requirement (req/s)")
    parser.add_argument("--peak-factor", type=float, default=3.0)
    parser.add_argument("--cpu-target", type=float, default=70.0, help="target tracking CPU %%")
    parser.add_argument("--max-p95-ms", type=float, default=500.0)
    parser.add_argument("--max-error-ratio", type=float, default=0.01)


def run_capacity(args: argparse.Namespace) -> int:
    steps = capacity.read_steps(args.history, args.cpu)
    for step in steps:
        cpu = ", ".join(f"{n} {step.utilization(n) * 100:.0f}%" for n in sorted(step.cpu_seconds))
        print(
            f"{step.users:4d} users: {step.rps:7.1f} req/s, p95 {step.p95_ms:6.0f} ms, "
            f"errors {step.error_ratio:.2%}, CPU {cpu}"
        )
    best = capacity.sustained(steps, args.max_p95_ms, args.max_error_ratio)
    if best is None:
        print("no step stayed within the thresholds: nothing to recommend")
        return 1
    print(f"\nsustained: {best.rps:.1f} req/s at {best.users} users (p95 {best.p95_ms:.0f} ms)")
    for service in sorted(best.cpu_seconds):
        result = capacity.recommend(service, best, args.rps, args.peak_factor, args.cpu_target)
        print("\n".join(result.arithmetic))
    print(
        "\nThese figures come from this machine: confirm them with the same step run "
        "against one task on Fargate (loadtest/README.md)."
    )
    return 0
