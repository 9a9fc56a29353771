"""``sbcntrctl audit``, ``sbcntrctl capacity`` and ``sbcntrctl loadtest ecs run``."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
from collections.abc import Callable
from pathlib import Path

from botocore.exceptions import ClientError

from sbcntrctl import awsenv
from sbcntrctl.infra.stacks import env_name
from sbcntrctl.loadtest import audit, capacity, cloudwatch, ecs, runinfo, shapes, verdict


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-id", required=True, help="the run to audit (Locust's --run-id)")
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
        type=env_name,
        help="STEP4 on a deployed environment: read the window --start..--end from CloudWatch",
    )
    parser.add_argument("--start", type=_utc, help="window start, ISO 8601 (UTC if no zone)")
    parser.add_argument("--end", type=_utc, help="window end, ISO 8601 (UTC if no zone)")
    add_edge_arguments(parser)
    parser.add_argument(
        "--rps", type=positive, default=10.0, help="business requirement (req/s, above 0)"
    )
    parser.add_argument(
        "--peak-factor", type=at_least_one, default=3.0, help="peak rate = --rps x this (1 or more)"
    )
    parser.add_argument(
        "--cpu-target", type=percent, default=70.0, help="target tracking CPU %% (above 0, to 100)"
    )
    parser.add_argument(
        "--max-p95-ms",
        type=positive,
        default=500.0,
        help="a step within thresholds: p95 at most this",
    )
    parser.add_argument(
        "--max-error-ratio",
        type=ratio,
        default=0.01,
        help="a step within thresholds: failed/requests at most this (0 to 1)",
    )


def _bounded(low: float, high: float, *, above: bool, shown: str) -> Callable[[str], float]:
    """An argparse type: a finite number from ``low`` (``above``: excluded) to ``high``;
    anything else is refused with the valid range, ``shown``."""

    def number(value: str) -> float:
        try:
            found = float(value)
        except ValueError:
            found = math.nan
        if not math.isfinite(found) or found < low or (above and found == low) or found > high:
            msg = f"{value!r}: give a number {shown}"
            raise argparse.ArgumentTypeError(msg)
        return found

    return number


positive = _bounded(0, math.inf, above=True, shown="above 0")
at_least_one = _bounded(1, math.inf, above=False, shown="of 1 or more")
percent = _bounded(0, 100, above=True, shown="above 0, at most 100")
ratio = _bounded(0, 1, above=False, shown="from 0 to 1")


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
    clients = {key: awsenv.client(name) for key, name in names.items()}
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


SHAPE_OPTIONS = {
    "shape": "LOAD_SHAPE",
    "target_rps": "LOAD_TARGET_RPS",
    "user_rps": "LOAD_USER_RPS",
    "shape_duration": "LOAD_DURATION",
    "step_rps": "LOAD_STEP_RPS",
    "step_seconds": "LOAD_STEP_SECONDS",
    "steps": "LOAD_STEPS",
}


def add_loadtest_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_subparsers(dest="where", required=True)
    on_ecs = where.add_parser("ecs", help="distributed runs as Fargate tasks in the VPC")
    actions = on_ecs.add_subparsers(dest="action", required=True)
    run = actions.add_parser(
        "run",
        help="run a master and N workers on Fargate, collect the reports, print the verdict",
        description=(
            "Start the Locust master task, then N worker tasks pointed at it, wait for the "
            "run, stop every task started (also on Ctrl+C), download the master's reports "
            "from S3 to --reports and print the verdict (loadtest/README.md)."
        ),
    )
    run.add_argument("env", type=env_name, help="the environment (ENV_NAME)")
    run.add_argument("--workers", type=int, required=True, help="worker tasks (1 vCPU each)")
    run.add_argument("--target", required=True, help="the URL the users call: the public ALB's")
    run.add_argument(
        "--image-tag",
        required=True,
        help="tag of the sbcntr-loadtest image in ECR: the release pushes each commit on main "
        "as its full SHA (git rev-parse HEAD); checked before any task starts",
    )
    run.add_argument("--bucket", required=True, help="S3 bucket the master uploads reports to")
    run.add_argument(
        "--subnets", required=True, help="the app subnets, comma-separated (subnet-a,subnet-b)"
    )
    run.add_argument(
        "--security-group",
        required=True,
        help="the load generators' group: may reach the ALB, and its members the master on 5557",
    )
    run.add_argument("--cluster", help="ECS cluster (default: sbcntr-ENV)")
    run.add_argument(
        "--public-ip",
        action="store_true",
        help="give the tasks public IPs: for public subnets when the app subnets have no "
        "route to an internet-facing ALB (no NAT) (default: off)",
    )
    run.add_argument("--run-id", help="marks the run's requests and rows (default: ecs-<UTC time>)")
    run.add_argument(
        "--shape", choices=shapes.SHAPE_NAMES, default="steady", help="load shape (%(default)s)"
    )
    run.add_argument("--target-rps", type=float, help="steady/soak rate, spike baseline (10)")
    run.add_argument("--user-rps", type=float, help="requests/s of one user (0.5)")
    run.add_argument("--shape-duration", type=float, help="seconds of the whole run (60)")
    run.add_argument("--step-rps", type=float, help="step: rate each step adds (10)")
    run.add_argument("--step-seconds", type=float, help="step: hold time of each step (0: even)")
    run.add_argument("--steps", type=int, help="step: number of steps (5)")
    run.add_argument(
        "--load-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other LOAD_* option of the run, e.g. LOAD_MAX_P95_MS=300 (repeatable)",
    )
    run.add_argument(
        "--reports", type=Path, help="where the reports go (default: reports/<run id>)"
    )
    run.add_argument(
        "--start-timeout",
        type=float,
        default=300.0,
        help="seconds for the master to run (%(default)s)",
    )
    run.add_argument(
        "--poll-seconds", type=float, default=5.0, help="DescribeTasks interval (%(default)s)"
    )


def _plan(args: argparse.Namespace, account: str, region: str) -> ecs.Plan:
    options = {
        variable: str(getattr(args, name))
        for name, variable in SHAPE_OPTIONS.items()
        if getattr(args, name) is not None
    }
    for pair in args.load_env:
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith("LOAD_"):
            msg = f"--load-env {pair!r}: give LOAD_NAME=VALUE"
            raise ValueError(msg)
        options[name] = value
    plan = ecs.Plan(
        env_name=args.env,
        account=account,
        region=region,
        cluster=args.cluster or f"sbcntr-{args.env}",
        image_tag=args.image_tag,
        bucket=args.bucket,
        subnets=[s.strip() for s in args.subnets.split(",") if s.strip()],
        security_group=args.security_group,
        target=args.target,
        workers=args.workers,
        run_id=args.run_id or ecs.default_run_id(),
        options=options,
        assign_public_ip=args.public_ip,
    )
    ecs.check(plan)
    shape = shapes.ShapeOptions(
        shape=args.shape,
        **{
            key: value
            for key, value in (
                ("target_rps", args.target_rps),
                ("user_rps", args.user_rps),
                ("duration", args.shape_duration),
                ("step_rps", args.step_rps),
                ("step_seconds", args.step_seconds),
                ("steps", args.steps),
            )
            if value is not None
        },
    )
    shapes.phases(shape)  # the options' own checks, before anything starts
    return plan


def run_loadtest(args: argparse.Namespace) -> int:
    """Exit 0: the run passed; 1: it missed a threshold; 2: refused or failed; 130: Ctrl+C."""
    try:
        identity = awsenv.client("sts").get_caller_identity()
        region = awsenv.region()
        plan = _plan(args, identity["Account"], region)
    except ValueError as exc:
        print(f"sbcntrctl loadtest ecs run: {exc}", file=sys.stderr)
        return 2
    run = ecs.Run(plan, awsenv.client("ecs"), poll_seconds=args.poll_seconds)
    total = shapes.total_seconds(shapes.ShapeOptions.from_options(_shape_namespace(plan)))
    reports = args.reports or runinfo.report_dir(plan.run_id, "")
    try:
        ecs.check_image(plan)
        master_td, worker_td = run.register("master"), run.register("worker")
        (master,) = run.start(master_td, 1, ecs.master_environment(plan))
        print(f"run {plan.run_id}: master task {master.rsplit('/', 1)[-1]} starting")
        address = run.wait_for_ip(master, args.start_timeout)
        workers: list[str] = []
        left = plan.workers
        while left:
            count = min(left, ecs.RUN_TASK_MOST)
            workers += run.start(worker_td, count, {"LOCUST_MASTER_NODE_HOST": address})
            left -= count
        print(f"master at {address}; {len(workers)} worker tasks; the run lasts {total:g} s")
        # the workers start, then the master waits for them, runs the shape and uploads
        stopped = run.wait_for_master(master, workers, args.start_timeout * 2 + total + 120)
    except KeyboardInterrupt:
        for arn in run.stop_all("sbcntrctl loadtest ecs run interrupted"):
            print(f"stopped {arn.rsplit('/', 1)[-1]}")
        print("interrupted: every task of the run stopped", file=sys.stderr)
        return 130
    except (ecs.LoadRunError, ClientError) as exc:
        for arn in run.stop_all("sbcntrctl loadtest ecs run failed"):
            print(f"stopped {arn.rsplit('/', 1)[-1]}")
        print(f"sbcntrctl loadtest ecs run: {exc}", file=sys.stderr)
        return 2
    run.stop_all("sbcntrctl loadtest ecs run: the run ended")
    exit_code = next(
        (c.get("exitCode") for c in stopped.get("containers", []) if c["name"] == ecs.CONTAINER),
        None,
    )
    try:
        written = ecs.collect(awsenv.client("s3"), plan.bucket, plan.run_id, master, reports)
    except (ecs.LoadRunError, ClientError) as exc:
        print(
            f"sbcntrctl loadtest ecs run: master exited {exit_code}; reports: {exc}",
            file=sys.stderr,
        )
        return 2
    summary = ecs.read_summary(reports)
    print("\n".join(verdict.render(summary)))
    print(f"reports: {', '.join(str(p) for p in written)}")
    print(
        f"STEP3: sbcntrctl audit --run-id {plan.run_id} --stats {reports / 'summary.json'} "
        "--log <the services' logs of the window>\n"
        f"STEP4: sbcntrctl capacity --cloudwatch {plan.env_name} "
        f"--start {summary['started_at']} --end {summary['ended_at']}"
    )
    return 1 if summary["missed"] else 0


def _shape_namespace(plan: ecs.Plan) -> argparse.Namespace:
    """The run's shape options as Locust would parse them from the LOAD_* variables."""
    values = plan.options
    return argparse.Namespace(
        shape=values.get("LOAD_SHAPE", "steady"),
        target_rps=float(values.get("LOAD_TARGET_RPS", 10.0)),
        user_rps=float(values.get("LOAD_USER_RPS", 0.5)),
        shape_duration=float(values.get("LOAD_DURATION", 60.0)),
        step_rps=float(values.get("LOAD_STEP_RPS", 10.0)),
        step_seconds=float(values.get("LOAD_STEP_SECONDS", 0.0)),
        steps=int(values.get("LOAD_STEPS", 5)),
        spike_factor=float(values.get("LOAD_SPIKE_FACTOR", 5.0)),
        spike_seconds=float(values.get("LOAD_SPIKE_SECONDS", 0.0)),
    )
