"""Where ``sbcntrctl deploy`` takes its variables from besides the environment.

``--env-file PATH`` (as written by ``sbcntrctl infra outputs ENV --env-file``) or
``--from-stack ENV`` (the outputs of the CloudFormation stacks of ENV). Variables
set in the process environment win over both, so one value can be overridden
(``IMAGE_TAG`` is always the user's).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Mapping
from pathlib import Path

from sbcntrctl import awsenv
from sbcntrctl.infra import cloudformation, envfile
from sbcntrctl.infra.stacks import env_name


class SourceError(Exception):
    """The file or the stacks could not be read; the message says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--env-file", type=Path, help="KEY=value lines, e.g. from `sbcntrctl infra outputs`"
    )
    source.add_argument(
        "--from-stack",
        metavar="ENV",
        type=env_name,
        help="take the variables from the outputs of the stacks of ENV (infra/)",
    )


def environment(args: argparse.Namespace, process: Mapping[str, str]) -> dict[str, str]:
    """The file's or stacks' variables, overridden by the process environment.

    ``AWS_REGION`` unset everywhere is :func:`sbcntrctl.awsenv.region`'s answer
    (``AWS_DEFAULT_REGION`` or the profile's), when there is one.
    """
    base: dict[str, str] = {}
    try:
        if args.env_file is not None:
            base = envfile.load(args.env_file)
        elif args.from_stack is not None:
            base = cloudformation.task_variables(args.from_stack)
    except (OSError, envfile.EnvFileError, cloudformation.InfraError) as exc:
        raise SourceError(str(exc)) from exc
    merged = {**base, **process}
    if not merged.get("AWS_REGION"):
        # The templates' AWS_REGION is where the deploy goes: the one region rule's.
        with contextlib.suppress(awsenv.RegionError):
            merged["AWS_REGION"] = awsenv.region()
    return merged
