"""``sbcntrctl shell ENV [-- COMMAND ...]``: a logged session on the environment's bastion.

The bastion (infra/operations.yml) is a task of its own, the backend's image
with a read-only root, in the environment's private subnets, no public IP and
no inbound rule. It is reached with ECS Exec, that is Session Manager; the
cluster logs every session to CloudWatch Logs, KMS-encrypted. This command:

1. checks that ``session-manager-plugin`` is installed (the AWS CLI's own check);
2. reads where the bastion runs from the operations, network and edge stacks;
3. reuses a running bastion task of the environment, or starts one with ECS Exec
   enabled, and waits until its ExecuteCommandAgent runs;
4. calls ExecuteCommand and hands the session to the plugin exactly as
   ``aws ecs execute-command`` does (awscli/customizations/ecs/executecommand.py);
5. stops the task it started when the session ends (``--keep`` leaves it).

With ``-- COMMAND ...`` the session runs that one command (``-- python -m backend
migrate --help``) instead of a shell.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sbcntrctl import awsenv
from sbcntrctl.infra import cloudformation
from sbcntrctl.infra.stacks import BY_KEY, env_name

PLUGIN = "session-manager-plugin"
PLUGIN_INSTALL = (
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/"
    "session-manager-working-with-install-plugin.html"
)
CONTAINER = "bastion"
STARTED_BY = "sbcntrctl-shell"
DEFAULT_SHELL = "/bin/sh"
EXEC_AGENT = "ExecuteCommandAgent"


class ShellError(Exception):
    """The session cannot be had; the message is one line saying why and what to do."""


@dataclass(frozen=True)
class Bastion:
    """Where the environment's bastion runs (the stacks' outputs)."""

    cluster: str
    family: str
    subnets: list[str]
    security_groups: list[str]

    @classmethod
    def of(cls, env: str) -> Bastion:
        try:
            operations = cloudformation.outputs(BY_KEY["operations"].name(env))
            network = cloudformation.outputs(BY_KEY["network"].name(env))
            edge = cloudformation.outputs(BY_KEY["edge"].name(env))
        except cloudformation.InfraError as exc:
            msg = f"{exc} (the bastion is the operations stack: docs/operations.md)"
            raise ShellError(msg) from exc
        if "OperationsCluster" not in operations:
            msg = (
                f"no bastion in {env}: the operations stack was deployed with OperatorAccess "
                "off for it (set OperatorAccess=always for a break-glass window)"
            )
            raise ShellError(msg)
        return cls(
            cluster=operations["OperationsCluster"],
            family=operations["BastionTaskDefinition"],
            subnets=[network["PrivateSubnet1"], network["PrivateSubnet2"]],
            security_groups=[
                operations["BastionSecurityGroup"],
                edge["FrontendSecurityGroup"],
                edge["BackendSecurityGroup"],
            ],
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("env", type=env_name, help="the environment whose bastion to reach")
    parser.add_argument(
        "command",
        nargs="*",
        help="after --: one command to run instead of a shell "
        "(e.g. -- python -m backend migrate --help); default: an interactive /bin/sh",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave a bastion task this command started running after the session "
        "(default: stop it; the task stops itself after BastionLifetimeSeconds anyway)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=300.0,
        help="seconds to wait for the bastion's ExecuteCommandAgent to run (default: %(default)s)",
    )
    parser.add_argument("--poll", type=float, default=3.0, help=argparse.SUPPRESS)


def command_line(words: list[str]) -> str:
    """The session's command: the words after ``--`` quoted for the shell, or a shell."""
    if words and words[0] == "--":
        words = words[1:]
    return shlex.join(words) if words else DEFAULT_SHELL


def run(args: argparse.Namespace) -> int:
    plugin = shutil.which(PLUGIN)
    if plugin is None:
        print(
            f"sbcntrctl shell: {PLUGIN} is not installed or not on PATH: "
            f"install it ({PLUGIN_INSTALL})",
            file=sys.stderr,
        )
        return 2
    try:
        bastion = Bastion.of(args.env)
        ecs = ecs_client()
        with bastion_task(ecs, bastion, args.wait, args.poll, keep=args.keep) as (task, runtime):
            return attach(ecs, plugin, bastion, task, runtime, command_line(args.command))
    except ShellError as exc:
        print(f"sbcntrctl shell: {exc}", file=sys.stderr)
        return 1


def ecs_client() -> Any:
    """The ECS client, in the region of :mod:`sbcntrctl.awsenv`'s one rule."""
    return awsenv.client("ecs")


def _exec_agent(container: dict[str, Any]) -> str:
    for agent in container.get("managedAgents", []):
        if agent.get("name") == EXEC_AGENT:
            return str(agent.get("lastStatus", ""))
    return ""


def _ready(task: dict[str, Any]) -> str | None:
    """The bastion container's runtime id once its exec agent runs, else None."""
    if task.get("lastStatus") != "RUNNING" or not task.get("enableExecuteCommand"):
        return None
    for container in task.get("containers", []):
        if container["name"] == CONTAINER and _exec_agent(container) == "RUNNING":
            return str(container.get("runtimeId", ""))
    return None


def _running(ecs: Any, bastion: Bastion) -> list[dict[str, Any]]:
    arns = ecs.list_tasks(cluster=bastion.cluster, family=bastion.family, desiredStatus="RUNNING")[
        "taskArns"
    ]
    if not arns:
        return []
    tasks: list[dict[str, Any]] = ecs.describe_tasks(cluster=bastion.cluster, tasks=arns[:100])[
        "tasks"
    ]
    return tasks


def _start(ecs: Any, bastion: Bastion) -> str:
    answer = ecs.run_task(
        cluster=bastion.cluster,
        taskDefinition=bastion.family,
        count=1,
        launchType="FARGATE",
        enableExecuteCommand=True,
        startedBy=STARTED_BY,
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": bastion.subnets,
                "securityGroups": bastion.security_groups,
                "assignPublicIp": "DISABLED",
            }
        },
    )
    if answer.get("failures") or not answer.get("tasks"):
        reasons = "; ".join(f.get("reason", "?") for f in answer.get("failures", [])) or "no task"
        msg = f"RunTask {bastion.family} in {bastion.cluster}: {reasons}"
        raise ShellError(msg)
    return str(answer["tasks"][0]["taskArn"])


def _wait_ready(
    ecs: Any, bastion: Bastion, task_arn: str, wait: float, poll: float
) -> tuple[dict[str, Any], str]:
    deadline = time.monotonic() + wait
    while True:
        task = ecs.describe_tasks(cluster=bastion.cluster, tasks=[task_arn])["tasks"][0]
        runtime = _ready(task)
        if runtime is not None:
            return task, runtime
        if task.get("lastStatus") == "STOPPED":
            msg = f"the bastion task stopped: {task.get('stoppedReason', 'no reason given')}"
            raise ShellError(msg)
        if time.monotonic() > deadline:
            msg = (
                f"the bastion's {EXEC_AGENT} did not run within {wait:g} s "
                f"(task {task.get('lastStatus')}); in an endpoints-only VPC the ssmmessages "
                "endpoint must exist (network.yml)"
            )
            raise ShellError(msg)
        time.sleep(poll)


@contextmanager
def bastion_task(
    ecs: Any, bastion: Bastion, wait: float, poll: float, *, keep: bool
) -> Iterator[tuple[dict[str, Any], str]]:
    """A bastion task ready for ECS Exec, and its container's runtime id; a task this
    started is stopped on the way out unless ``keep``."""
    for task in _running(ecs, bastion):
        runtime = _ready(task)
        if runtime is not None:
            print(f"sbcntrctl shell: attaching to {task['taskArn']}", file=sys.stderr)
            yield task, runtime
            return
    task_arn = _start(ecs, bastion)
    print(f"sbcntrctl shell: started {task_arn}; waiting for ECS Exec", file=sys.stderr)
    try:
        yield _wait_ready(ecs, bastion, task_arn, wait, poll)
    finally:
        if not keep:
            ecs.stop_task(cluster=bastion.cluster, task=task_arn, reason="sbcntrctl shell ended")
            print(f"sbcntrctl shell: stopped {task_arn}", file=sys.stderr)


@contextmanager
def _signals_to_the_plugin() -> Iterator[None]:
    """Ctrl-C and Ctrl-Z go to the plugin (and the remote shell), not to this process."""
    signals = (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP)
    previous = [signal.signal(s, signal.SIG_IGN) for s in signals]
    try:
        yield
    finally:
        for sig, handler in zip(signals, previous, strict=True):
            signal.signal(sig, handler)


def attach(
    ecs: Any, plugin: str, bastion: Bastion, task: dict[str, Any], runtime: str, command: str
) -> int:
    """ExecuteCommand, then the plugin with the session, as the AWS CLI calls it."""
    answer = ecs.execute_command(
        cluster=bastion.cluster,
        task=task["taskArn"],
        container=CONTAINER,
        interactive=True,  # the only mode ECS Exec supports
        command=command,
    )
    task_id = task["taskArn"].rsplit("/", 1)[-1]
    cluster_name = answer["clusterArn"].rsplit("/", 1)[-1]
    target = {"Target": f"ecs:{cluster_name}_{task_id}_{runtime}"}
    profile = awsenv.session().profile_name
    with _signals_to_the_plugin():
        finished = subprocess.run(
            [
                plugin,
                json.dumps(answer["session"]),
                ecs.meta.region_name,
                "StartSession",
                "" if profile == "default" else profile,
                json.dumps(target),
                ecs.meta.endpoint_url,
            ],
            check=False,
        )
    return finished.returncode
