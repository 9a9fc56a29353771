"""``sbcntrctl deploy``: render, verify, diff, migrate, deploy and roll back a service.

While a deploy or a rollback waits, each lifecycle stage of the deployment
is printed as it happens (stdout); a deployment ECS stopped ends with one line
on stderr naming who stopped it (an alarm, a lifecycle hook, the circuit
breaker) and why.

Exit codes: 0 done; 1 a problem was found or an AWS call failed (one line
says which); 2 a variable or a template is wrong; 3 the deployment failed
(ECS stopped it or rolled it back); 4 the deployment did not reach steady
state in time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sbcntrctl.deploy import ecs, iam, migrate, sources, template
from sbcntrctl.helpformat import actions_epilog

ACTIONS = {
    "render": "print the task definition rendered from taskdefs/ and the variables",
    "verify": "check the rendered definitions, then against the account (not with --offline)",
    "diff": "print what deploy would change in the service and its scaling",
    "migrate": "run the database migration as a one-off task of the new revision (backend)",
    "deploy": "register the revision and update the service (backend: migrate first)",
    "rollback": "point the service back at the latest earlier revision that ran",
    "render-iam": "print the policies of the service's execution and task roles",
}
EXIT_PROBLEM, EXIT_INPUT, EXIT_FAILED, EXIT_TIMED_OUT = 1, 2, 3, 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = actions_epilog(ACTIONS)
    parser.add_argument("action", choices=ACTIONS, help="what to do (actions below)")
    parser.add_argument("service", choices=("frontend", "backend"), help="the service")
    parser.add_argument("--dir", type=Path, default=ecs.DEFAULT_DIR, help="the taskdefs folder")
    parser.add_argument(
        "--wait",
        type=float,
        help="seconds to wait for the deployment to end (default: 600, plus the bake times "
        "and lifecycle hook timeouts of a BLUE_GREEN or CANARY deployment)",
    )
    parser.add_argument(
        "--cluster", help="rollback: the cluster (default: ECS_CLUSTER); nothing else is needed"
    )
    parser.add_argument(
        "--desired-count",
        type=int,
        help="deploy: set the service's desiredCount (default: keep the running one)",
    )
    parser.add_argument(
        "--apply-capacity",
        action="store_true",
        help="deploy: set the scalable target's min/max from scaling.json (default: keep them)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="deploy: print what would change, change nothing"
    )
    parser.add_argument(
        "--offline", action="store_true", help="verify: skip the checks against the account"
    )
    sources.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except template.TemplateError as exc:
        print(f"{args.action} failed: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except ecs.DeploymentFailedError as exc:
        print(f"{args.action} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ecs.DeploymentTimeoutError as exc:
        print(f"{args.action} timed out: {exc}", file=sys.stderr)
        return EXIT_TIMED_OUT
    except ecs.DeployError as exc:
        print(f"{args.action} failed: {exc}", file=sys.stderr)
        return EXIT_PROBLEM


def _run(args: argparse.Namespace) -> int:
    try:
        env = sources.environment(args, os.environ)
    except sources.SourceError as exc:
        print(f"{args.action} failed: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if args.action == "rollback":
        cluster = args.cluster or env.get("ECS_CLUSTER")
        if not cluster:
            print("rollback failed: set --cluster or ECS_CLUSTER", file=sys.stderr)
            return EXIT_INPUT
        return _report(ecs.rollback(cluster, args.service, args.wait, progress=stage))
    if args.action == "render-iam":
        print(json.dumps(iam.render(args.service, env, args.dir), indent=2))
        return 0
    rendered = ecs.render(args.service, env, args.dir)
    if args.action == "render":
        print(json.dumps(rendered.task_definition, indent=2))
        return 0
    problems = ecs.problems(rendered)
    if args.action == "verify" and not problems and not args.offline:
        problems = ecs.account_problems(rendered)
    if args.action == "verify" or problems:
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        count = len(problems)
        verdict = "verified" if not count else f"{count} problem{'s' if count > 1 else ''}"
        print(f"{args.service}: {verdict}")
        return EXIT_PROBLEM if problems else 0
    if args.action == "diff" or args.dry_run:
        print(ecs.diff(rendered, apply_capacity=args.apply_capacity) or "no difference")
        return 0
    if args.action == "migrate":
        task = migrate.run_latest(rendered, args.wait or migrate.DEFAULT_TIMEOUT_SECONDS)
        print(f"{rendered.service_name}: migration task {task.task_id} exited 0")
        return 0
    return _report(
        ecs.deploy(
            rendered,
            args.wait,
            desired_count=args.desired_count,
            apply_capacity=args.apply_capacity,
            # The schema first: the new tasks must find the database at their revision.
            before_update=migrate.before_update(rendered, args.wait or 0),
            progress=stage,
        )
    )


def stage(line: str) -> None:
    """Print a lifecycle stage at once (the deploy runs for minutes)."""
    print(line, flush=True)


def _report(result: ecs.Result) -> int:
    for note in result.notes:
        print(f"  {note}", file=sys.stderr)
    name = result.task_definition_arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]
    print(f"{name}: revision {result.revision}, image {result.image}")
    return 0
