"""sbcntrctl: operator tooling for the sbcntr services (never in a service image)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError

from sbcntrctl import awsenv, shell, xraycapture
from sbcntrctl.bench import cli as bench_cli
from sbcntrctl.deploy import aws
from sbcntrctl.deploy import cli as deploy_cli
from sbcntrctl.drill import cli as drill_cli
from sbcntrctl.helpformat import Parser, describe
from sbcntrctl.infra import cli as infra_cli
from sbcntrctl.loadtest import cli as loadtest_cli
from sbcntrctl.loadtest import rows as loadtest_rows
from sbcntrctl.release import cli as release_cli

WORKFLOW = """\
workflow (each command's --help; README.md "Operating it"):
  1. infra     sbcntrctl infra deploy dev
               sbcntrctl infra outputs dev --env-file dev.env
  2. release   CI builds, scans, pushes and deploys (sbcntrctl release ...); by hand:
     deploy    IMAGE_TAG=... sbcntrctl deploy deploy backend --env-file dev.env
               (then frontend; verify, diff and rollback the same way)
  3. loadtest  locust -f loadtest/ --headless --run-id step-1 --shape step ...
               (on Fargate: sbcntrctl loadtest ecs run dev --workers N ...)
               sbcntrctl audit --run-id step-1 --log ...   (loadtest/README.md)
  4. capacity  sbcntrctl capacity --steps reports/step-1/steps.csv --cpu reports/step-1/cpu.csv
               sbcntrctl capacity --cloudwatch dev --start ... --end ...
"""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: each subcommand with its one-line summary and handler."""
    parser = Parser(prog="sbcntrctl", description=__doc__, epilog=WORKFLOW)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench = commands.add_parser(
        "bench", help="benchmark CPU per request, throughput and memory against baselines"
    )
    bench_cli.add_arguments(bench)
    bench.set_defaults(handler=bench_cli.run)
    deploy = commands.add_parser(
        "deploy", help="render, verify, diff, migrate, deploy or roll back a service on ECS"
    )
    deploy_cli.add_arguments(deploy)
    deploy.set_defaults(handler=deploy_cli.run)
    infra = commands.add_parser(
        "infra", help="deploy, read or delete the CloudFormation stacks in infra/"
    )
    infra_cli.add_infra_arguments(infra)
    infra.set_defaults(handler=infra_cli.run_infra)
    maintenance = commands.add_parser(
        "maintenance", help="turn the public ALB's maintenance page on or off, or show it"
    )
    infra_cli.add_maintenance_arguments(maintenance)
    maintenance.set_defaults(handler=infra_cli.run_maintenance)
    audit = commands.add_parser(
        "audit", help="STEP3: check a load run lost or doubled nothing in logs and traces"
    )
    loadtest_cli.add_audit_arguments(audit)
    audit.set_defaults(handler=loadtest_cli.run_audit)
    sizing = commands.add_parser(
        "capacity", help="STEP2/4/5: task size, task counts and target value from a step run"
    )
    loadtest_cli.add_capacity_arguments(sizing)
    sizing.set_defaults(handler=loadtest_cli.run_capacity)
    loadtest = commands.add_parser("loadtest", help="distributed load runs (Fargate)")
    loadtest_cli.add_loadtest_arguments(loadtest)
    loadtest.set_defaults(handler=loadtest_cli.run_loadtest)
    rows = commands.add_parser(
        "loadtest-rows", help="count or delete the rows load runs wrote (SQLite)"
    )
    loadtest_rows.add_arguments(rows)
    rows.set_defaults(handler=loadtest_rows.run)
    capture = commands.add_parser(
        "xray-capture", help="listen in the X-Ray daemon's place and write segments to a file"
    )
    xraycapture.add_arguments(capture)
    capture.set_defaults(handler=xraycapture.run)
    session = commands.add_parser(
        "shell",
        help="a logged Session Manager shell (or one command) on the environment's bastion",
        description=shell.__doc__,
    )
    shell.add_arguments(session)
    session.set_defaults(handler=shell.run)
    drill = commands.add_parser(
        "drill",
        help="run one FIS failure drill of infra/drills.yml and report what the services did",
        description=drill_cli.__doc__,
    )
    drill_cli.add_arguments(drill)
    drill.set_defaults(handler=drill_cli.run)
    release = commands.add_parser(
        "release", help="the release pipeline's steps (what each job of the workflow runs)"
    )
    release_cli.add_arguments(release)
    release.set_defaults(handler=release_cli.run)
    describe(parser)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; its exit status.

    An AWS failure no subcommand turned into its own message still ends as
    one line on stderr (the call, the reason, the fix) with status 1, never
    a traceback.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(words)
    try:
        status: int = args.handler(args)
    except (BotoCoreError, ClientError) as exc:
        operation = getattr(exc, "operation_name", "AWS call")
        return _failed(words, args, str(aws.explain(operation, {}, exc)))
    except (awsenv.RegionError, aws.DeployError) as exc:
        return _failed(words, args, str(exc))
    return status


def _failed(words: list[str], args: argparse.Namespace, message: str) -> int:
    action = getattr(args, "action", None)
    command = f"{words[0]} {action}" if isinstance(action, str) else words[0]
    print(f"sbcntrctl {command}: {message}", file=sys.stderr)
    return 1


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
