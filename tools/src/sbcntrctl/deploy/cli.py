"""``sbcntrctl deploy``: render, verify, diff, deploy and roll back a service."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sbcntrctl.deploy import ecs, template

ACTIONS = ("render", "verify", "diff", "deploy", "rollback")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("service", choices=("frontend", "backend"))
    parser.add_argument("--dir", type=Path, default=ecs.DEFAULT_DIR, help="the taskdefs folder")
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for stability")


def run(args: argparse.Namespace) -> int:
    try:
        rendered = ecs.render(args.service, os.environ, args.dir)
    except template.MissingVariables as exc:
        print(f"render failed: {exc}", file=sys.stderr)
        return 2
    if args.action == "render":
        print(json.dumps(rendered.task_definition, indent=2))
        return 0
    problems = ecs.problems(rendered)
    if args.action == "verify" or problems:
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print(f"{args.service}: {'verified' if not problems else f'{len(problems)} problems'}")
        return 1 if problems else 0
    try:
        if args.action == "diff":
            print(ecs.diff(rendered) or "no difference")
            return 0
        result = (
            ecs.deploy(rendered, args.wait)
            if args.action == "deploy"
            else ecs.rollback(rendered, args.wait)
        )
    except ecs.DeployError as exc:
        print(f"{args.action} failed: {exc}", file=sys.stderr)
        return 1
    print(f"{rendered.service_name}: revision {result.revision}, image {result.image}")
    return 0
