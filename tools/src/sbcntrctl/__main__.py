"""``sbcntrctl``: operator tooling for the sbcntr services."""

from __future__ import annotations

import argparse
import sys

from sbcntrctl.bench import cli as bench_cli
from sbcntrctl.deploy import cli as deploy_cli


def main() -> None:
    parser = argparse.ArgumentParser(prog="sbcntrctl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="benchmark the services against baselines")
    bench_cli.add_arguments(bench)
    bench.set_defaults(handler=bench_cli.run)
    deploy = commands.add_parser("deploy", help="render, verify, diff, deploy, rollback on ECS")
    deploy_cli.add_arguments(deploy)
    deploy.set_defaults(handler=deploy_cli.run)
    args = parser.parse_args()
    sys.exit(args.handler(args))


if __name__ == "__main__":
    main()
