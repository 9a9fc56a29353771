"""``sbcntrctl infra deploy|outputs|delete ENV`` and ``sbcntrctl maintenance on|off|status ENV``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sbcntrctl import awsenv
from sbcntrctl.deploy.aws import DeployError
from sbcntrctl.helpformat import actions_epilog
from sbcntrctl.infra import cloudformation, envfile, maintenance, retained
from sbcntrctl.infra.stacks import (
    BY_KEY,
    ENV_NAME_RULE,
    INFRA_DIR,
    STACKS,
    USER_SUPPLIED,
    Stack,
    env_name,
)

INFRA_ACTIONS = {
    "deploy": "create or update the stacks through change sets, each shown before it runs",
    "outputs": "print the variables the deploy needs, read from the stacks' outputs",
    "delete": "delete the environment's stacks, in reverse order",
}
MAINTENANCE_ACTIONS = {
    "on": "answer every request with the maintenance page (503)",
    "off": "serve the services again (the page only for requests with the header "
    "X-Sbcntr-Maintenance-Preview: on)",
    "status": "show whether the maintenance page is on",
}


def add_infra_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = actions_epilog(INFRA_ACTIONS)
    parser.add_argument("action", choices=INFRA_ACTIONS, help="what to do (actions below)")
    parser.add_argument("env", type=env_name, help=f"the environment: {ENV_NAME_RULE}")
    parser.add_argument(
        "--only",
        action="append",
        choices=[s.key for s in STACKS],
        help="this stack only (repeatable); default: all but the optional "
        f"{', '.join(s.key for s in STACKS if s.optional)}, in order "
        "(delete: the environment's, optional ones included, in reverse)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template parameter, passed to every stack that declares it (repeatable)",
    )
    parser.add_argument(
        "--purge-retained",
        action="store_true",
        help="delete: also delete what the stacks keep (log groups, log bucket, database "
        "secret; their KMS keys scheduled for deletion), so ENV can be created again; "
        "default: keep them and list them",
    )
    parser.add_argument("--yes", action="store_true", help="execute without asking")
    parser.add_argument("--env-file", type=Path, help="outputs: write the variables here")
    parser.add_argument("--dir", type=Path, default=INFRA_DIR, help="the templates folder")
    parser.add_argument("--wait", type=float, default=3600, help="seconds to wait per stack")
    parser.add_argument(
        "--poll", type=float, default=cloudformation.POLL_SECONDS, help=argparse.SUPPRESS
    )


def run_infra(args: argparse.Namespace) -> int:
    try:
        if args.action == "deploy":
            return _deploy(args)
        if args.action == "outputs":
            return _outputs(args)
        return _delete(args)
    except (cloudformation.InfraError, DeployError, awsenv.RegionError) as exc:
        print(f"infra {args.action} failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a template (--dir) or the --env-file
        print(f"infra {args.action} failed: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1


def _selected(args: argparse.Namespace) -> list[Stack]:
    if args.only:
        return [s for s in STACKS if s.key in args.only]
    return [s for s in STACKS if not s.optional]


def _parameters(args: argparse.Namespace) -> dict[str, str]:
    parameters = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            msg = f"--param {item!r}: expected NAME=VALUE"
            raise cloudformation.InfraError(msg)
        parameters[name] = value
    known = set().union(*(s.parameters(args.dir) for s in STACKS))
    unknown = sorted(set(parameters) - known)
    if unknown:
        msg = f"no template declares {', '.join(unknown)} (declared: {', '.join(sorted(known))})"
        raise cloudformation.InfraError(msg)
    return parameters


def _confirm(question: str, args: argparse.Namespace) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} refused: not a terminal; pass --yes", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _deploy(args: argparse.Namespace) -> int:
    parameters = _parameters(args)
    for stack in _selected(args):
        if not stack.shared and cloudformation.describe(stack.name(args.env)) is None:
            kept = retained.blocking(args.env, stack, args.dir)
            if kept:
                msg = (
                    f"{stack.name(args.env)} cannot be created: a deleted {args.env} kept "
                    f"{', '.join(map(str, kept))} (fix: sbcntrctl infra delete {args.env} "
                    "--purge-retained deletes them; or choose another environment name)"
                )
                raise cloudformation.InfraError(msg)
        change_set = cloudformation.plan(stack, args.env, parameters, args.dir, args.poll)
        if change_set.change_set_id is None:
            print(f"{change_set.stack_name}: no changes")
            continue
        print(f"{change_set.stack_name}: {len(change_set.changes)} changes")
        for line in change_set.changes:
            print(f"  {line}")
        if not _confirm(f"execute the change set of {change_set.stack_name}?", args):
            cloudformation.discard(change_set)
            return 2
        status = cloudformation.execute(change_set, args.wait, args.poll)
        print(f"{change_set.stack_name}: {status}")
    return 0


def _outputs(args: argparse.Namespace) -> int:
    variables = cloudformation.task_variables(args.env)
    user = "\n".join(f"{k}: {why} (not from the stacks)" for k, why in USER_SUPPLIED.items())
    text = envfile.dumps(variables, f"sbcntr {args.env}: from `sbcntrctl infra outputs`\n{user}")
    if args.env_file:
        args.env_file.write_text(text)
        print(f"{len(variables)} variables written to {args.env_file}")
    else:
        print(text, end="")
    return 0


def _delete(args: argparse.Namespace) -> int:
    # The environment's stacks, its optional ones included; shared ones only when named.
    chosen = [s for s in STACKS if s.key in args.only] if args.only else STACKS
    stacks = [s for s in reversed(chosen) if not s.shared or args.only]
    services = cloudformation.services_in_cluster(args.env)
    if services and {"edge", "platform", "network"} & {s.key for s in stacks}:
        cluster = f"sbcntr-{args.env}"
        msg = (
            f"{cluster} still runs {', '.join(services)}: delete them first "
            f"(aws ecs delete-service --cluster {cluster} --service NAME --force)"
        )
        raise cloudformation.InfraError(msg)
    names = ", ".join(s.name(args.env) for s in stacks)
    purge = " and what they keep" if args.purge_retained else ""
    if not _confirm(f"delete {names}{purge}?", args):
        return 2
    for stack in stacks:
        status = cloudformation.delete(stack.name(args.env), args.wait, args.poll)
        print(f"{stack.name(args.env)}: {status}")
    kept = retained.left_behind(args.env, [s for s in STACKS if not s.shared], args.dir)
    if args.purge_retained:
        for line in retained.purge(kept):
            print(line)
    elif kept:
        print(f"kept (DeletionPolicy Retain): {', '.join(map(str, kept))}")
        print(
            f"  {args.env} cannot be created again while they exist: "
            f"sbcntrctl infra delete {args.env} --purge-retained deletes them"
        )
    return 0


def add_maintenance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = actions_epilog(MAINTENANCE_ACTIONS)
    parser.add_argument("action", choices=MAINTENANCE_ACTIONS, help="what to do (actions below)")
    parser.add_argument("env", type=env_name, help=f"the environment: {ENV_NAME_RULE}")


def run_maintenance(args: argparse.Namespace) -> int:
    try:
        if args.action == "status":
            state = maintenance.status(args.env)
        else:
            state = maintenance.switch(args.env, on=args.action == "on")
    except (cloudformation.InfraError, DeployError, awsenv.RegionError) as exc:
        print(f"maintenance {args.action} failed: {exc}", file=sys.stderr)
        return 1
    print(f"{BY_KEY['edge'].name(args.env)}: maintenance {state.live}")
    if state.live != state.declared:
        print(
            f"  the stack declares MaintenanceMode={state.declared}: a stack update that "
            f"changes the rule sets it back (infra deploy {args.env} "
            f"--param MaintenanceMode={state.live} keeps it)"
        )
    return 0
