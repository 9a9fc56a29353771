"""``sbcntrctl drill ENV NAME``: start one of the environment's FIS drills, follow it,
and report what the services did (docs/operations.md)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from typing import Any

from sbcntrctl import awsenv
from sbcntrctl.drill import experiments, report
from sbcntrctl.infra.stacks import env_name
from sbcntrctl.loadtest import cli as loadtest_cli
from sbcntrctl.loadtest import cloudwatch

BASELINE = dt.timedelta(seconds=60)
CLIENTS = ("fis", "ecs", "cloudwatch", "application-autoscaling", "logs", "cloudformation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("env", type=env_name, help="the environment to drill")
    parser.add_argument(
        "name",
        choices=sorted(experiments.DRILLS),
        help="the drill: an experiment template of infra/drills.yml",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=180.0,
        help="seconds to wait after the experiment ends before reading CloudWatch, so the "
        "recovery and the metrics' delay fall in the window (default: %(default)s)",
    )
    parser.add_argument(
        "--poll", type=float, default=10.0, help="seconds between looks (default: %(default)s)"
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="required to drill prod (default: prod is refused)",
    )
    loadtest_cli.add_edge_arguments(parser)


def clients() -> dict[str, Any]:
    return {name: awsenv.client(name) for name in CLIENTS}


def settle(seconds: float) -> None:
    """Wait for the recovery and for the metrics (CloudWatch's delay) to land."""
    time.sleep(seconds)


def run(args: argparse.Namespace) -> int:
    """Exit 0: the drill completed; 1: an alarm stopped it, it failed, or it was stopped
    by hand; 2: refused before starting (nothing was done)."""
    if args.env == "prod" and not args.yes:
        print("sbcntrctl drill: refused: drilling prod needs --yes", file=sys.stderr)
        return 2
    try:
        return _run(args, clients())
    except experiments.DrillError as exc:
        print(f"sbcntrctl drill: refused: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, aws_clients: dict[str, Any]) -> int:
    template = experiments.template_id(aws_clients["fis"], args.env, args.name)
    problems = experiments.preflight(aws_clients["ecs"], args.env, args.name)
    if problems:
        raise experiments.DrillError("; ".join(problems) + " (docs/operations.md)")
    exported_lb, exported_tg = cloudwatch.edge_names(aws_clients["cloudformation"], args.env)
    load_balancer = args.load_balancer or exported_lb
    target_group = args.target_group or exported_tg
    if not load_balancer or not target_group:
        msg = "no edge stack exports for this environment: give --load-balancer and --target-group"
        raise experiments.DrillError(msg)

    experiment_id = experiments.start(aws_clients["fis"], template, args.name)
    print(f"drill {args.name} on {args.env}: experiment {experiment_id} (template {template})")
    outcome = experiments.follow(aws_clients["fis"], experiment_id, args.poll, print)
    experiment = outcome.experiment
    # From the minute before the fault (the baseline) to the end of the settling time.
    start = (experiment.get("startTime") or experiment["creationTime"]) - BASELINE
    ended = experiment.get("endTime") or dt.datetime.now(dt.UTC)
    settle(args.settle)
    end = min(ended + dt.timedelta(seconds=args.settle), dt.datetime.now(dt.UTC))
    window = cloudwatch.read(aws_clients, args.env, start, end, load_balancer, target_group)
    started = report.tasks_started(aws_clients["ecs"], args.env, start, end)
    print("\n".join(report.lines(window, started)))
    reason = experiment["state"].get("reason", "")
    if outcome.stopped_by_alarm:
        print(f"STOPPED BY A STOP CONDITION: an alarm fired, users would have been hurt ({reason})")
        return 1
    if outcome.status != "completed":
        print(f"the experiment ended {outcome.status}: {reason}")
        return 1
    print("completed: no stop condition fired")
    return 0
