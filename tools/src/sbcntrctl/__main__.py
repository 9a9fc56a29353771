"""``sbcntrctl``: operator tooling for the sbcntr services."""

from __future__ import annotations

import argparse
import sys

from sbcntrctl.bench import cli as bench_cli
from sbcntrctl.deploy import cli as deploy_cli
from sbcntrctl.loadtest import cli as loadtest_cli


def main() -> None:
    parser = argparse.ArgumentParser(prog="sbcntrctl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="benchmark the services against baselines")
    bench_cli.add_arguments(bench)
    bench.set_defaults(handler=bench_cli.run)
    deploy = commands.add_parser("deploy", help="render, verify, diff, deploy, rollback on ECS")
    deploy_cli.add_arguments(deploy)
    deploy.set_defaults(handler=deploy_cli.run)
    audit = commands.add_parser("audit", help="STEP3: check a load run's logs and traces")
    loadtest_cli.add_audit_arguments(audit)
    audit.set_defaults(handler=loadtest_cli.run_audit)
    sizing = commands.add_parser("capacity", help="STEP2/4/5: size tasks from a step run")
    loadtest_cli.add_capacity_arguments(sizing)
    sizing.set_defaults(handler=loadtest_cli.run_capacity)
    args = parser.parse_args()
    sys.exit(args.handler(args))


if __name__ == "__main__":
    main()
