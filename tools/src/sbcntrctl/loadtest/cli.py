"""``sbcntrctl audit`` and ``sbcntrctl capacity``."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import boto3

from sbcntrctl.loadtest import audit, capacity, cloudwatch, runinfo


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-id", required=True)
    parser.add_argument(
        "--stats",
        type=Path,
        help="the run's summary.json (default reports/<run id>/summary.json)",
    )
    parser.add_argument("--frontend-log", type=Path, help="the frontend's own log")
    parser.add_argument("--backend-log", type=Path, help="the backend's own log")
    parser.add_argument(
        "--log",
        type=Path,
        action="append",
        default=[],
        help="a log holding both services, split by the service field (repeatable)",
    )
    parser.add_argument("--segments", type=Path, help="captured X-Ray segments, one JSON per line")
    parser.add_argument(
        "--allow-errors", help="regex matched against the raw error lines the run caused on purpose"
    )


def run_audit(args: argparse.Namespace) -> int:
    """Exit 0: no gap; 1: gaps; 2: the inputs do not belong together (nothing audited)."""
    if not args.log and not (args.frontend_log and args.backend_log):
        print("sbcntrctl audit: give --frontend-log and --backend-log, or --log", file=sys.stderr)
        return 2
    stats = args.stats or runinfo.report_dir(args.run_id, "") / "summary.json"
    try:
        report = audit.audit(
            args.run_id,
            stats,
            frontend_log=args.frontend_log,
            backend_log=args.backend_log,
            logs=args.log,
            segments=args.segments,
            allowed_errors=args.allow_errors,
        )
    except audit.AuditInputError as exc:
        print(f"sbcntrctl audit: refused: {exc}", file=sys.stderr)
        return 2
    print(audit.render(report))
    return 0 if report.ok else 1


def add_edge_arguments(parser: argparse.ArgumentParser) -> None:
    """Where CloudWatch's load balancer figures are read (capacity --cloudwatch, drill)."""
    parser.add_argument(
        "--load-balancer",
        help="the public ALB's full name (app/<name>/<id>); default: the edge stack's export",
    )
    parser.add_argument(
        "--target-group",
        help="the frontend target group's full name; default: the edge stack's export",
    )


def add_capacity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=Path, help="steps.csv written by the step run")
    parser.add_argument("--cpu", type=Path, help="cpu.csv written with --sample-pids")
    parser.add_argument(
        "--cloudwatch",
        metavar="ENV",
        choices=("dev", "stg", "prod"),
        help="STEP4 on a deployed environment: read the window --start..--end from CloudWatch",
    )
    parser.add_argument("--start", type=_utc, help="window start, ISO 8601 (UTC if no zone)")
    parser.add_argument("--end", type=_utc, help="window end, ISO 8601 (UTC if no zone)")
    add_edge_arguments(parser)
    parser.add_argument("--rps", type=float, default=10.0, help="business requirement (req/s)")
    parser.add_argument("--peak-factor", type=float, default=3.0)
    parser.add_argument("--cpu-target", type=float, default=70.0, help="target tracking CPU %%")
    parser.add_argument("--max-p95-ms", type=float, default=500.0)
    parser.add_argument("--max-error-ratio", type=float, default=0.01)


def _utc(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def run_capacity(args: argparse.Namespace) -> int:
    if args.cloudwatch:
        return _run_cloudwatch_capacity(args)
    if args.steps is None or args.cpu is None:
        print("sbcntrctl capacity: give --steps and --cpu, or --cloudwatch ENV", file=sys.stderr)
        return 2
    try:
        steps = capacity.read_steps(args.steps, args.cpu)
    except (OSError, ValueError) as exc:
        print(f"sbcntrctl capacity: refused: {exc}", file=sys.stderr)
        return 2
    print(f"How: {capacity.HOW}.")
    for step in steps:
        cpu = ", ".join(f"{n} {step.utilization(n) * 100:.0f}%" for n in sorted(step.cpu_seconds))
        verdict = "ok" if capacity.within(step, args.max_p95_ms, args.max_error_ratio) else "MISSED"
        print(
            f"{step.name:>9}: {step.users:4d} users, {step.rps:7.1f} req/s, "
            f"p95 {step.p95_ms:6.0f} ms, errors {step.error_ratio:.2%}, CPU {cpu}: {verdict}"
        )
    best = capacity.sustained(steps, args.max_p95_ms, args.max_error_ratio)
    if best is None:
        print("no step stayed within the thresholds: nothing to recommend")
        return 1
    print(f"\nsustained: {best.rps:.1f} req/s at {best.users} users (p95 {best.p95_ms:.0f} ms)")
    if capacity.unsaturated(steps, args.max_p95_ms, args.max_error_ratio):
        print(
            "WARNING: the top step still met the thresholds: the limit was not reached, so "
            "the sustained rate (and the sizes below) is a lower bound; run more or higher steps"
        )
    for service in sorted(best.cpu_seconds):
        result = capacity.recommend(service, best, args.rps, args.peak_factor, args.cpu_target)
        print("\n".join(result.arithmetic))
    print(
        "\nThese figures come from this machine: confirm them with the same step run "
        "against one task on Fargate (loadtest/README.md)."
    )
    return 0


def _run_cloudwatch_capacity(args: argparse.Namespace) -> int:
    """STEP4 from CloudWatch, then the STEP5 recommendation as for a local run."""
    if args.start is None or args.end is None or args.end <= args.start:
        print("sbcntrctl capacity: --cloudwatch needs --start before --end", file=sys.stderr)
        return 2
    names = {
        "cloudwatch": "cloudwatch",
        "ecs": "ecs",
        "application-autoscaling": "application-autoscaling",
        "logs": "logs",
        "cloudformation": "cloudformation",
    }
    clients = {key: boto3.client(name) for key, name in names.items()}
    exported_lb, exported_tg = cloudwatch.edge_names(clients["cloudformation"], args.cloudwatch)
    load_balancer = args.load_balancer or exported_lb
    target_group = args.target_group or exported_tg
    if not load_balancer or not target_group:
        print(
            "sbcntrctl capacity: no edge stack exports for this environment: give "
            "--load-balancer and --target-group",
            file=sys.stderr,
        )
        return 2
    window = cloudwatch.read(
        clients, args.cloudwatch, args.start, args.end, load_balancer, target_group
    )
    print(f"STEP4: {args.cloudwatch}, {args.start.isoformat()} to {args.end.isoformat()}")
    print("| check | met | figure |\n|---|---|---|")
    checks = cloudwatch.checklist(window, args.rps, args.max_p95_ms, args.max_error_ratio)
    for check in checks:
        met = {True: "met", False: "NOT MET", None: "no data"}[check.met]
        print(f"| {check.what} | {met} | {check.figure} |")
    for line in window.errors_while_scaling[:20]:
        print(f"  error while scaling: {line}")
    step = cloudwatch.as_step(window)
    print("\nSTEP5:")
    for service in cloudwatch.SERVICES:
        result = capacity.recommend(service, step, args.rps, args.peak_factor, args.cpu_target)
        print("\n".join(result.arithmetic))
    return 0 if all(check.met is not False for check in checks) else 1
