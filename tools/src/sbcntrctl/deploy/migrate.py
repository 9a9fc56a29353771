"""Database migrations on ECS: a one-off task of the service's own task definition.

``sbcntrctl deploy migrate backend`` (and ``deploy deploy backend``, before it
updates the service) runs the backend's task definition once with RunTask,
with the app container's command overridden to ``python -m backend
migrate``, in the service's subnets and security group, and waits for the
task to stop. Success is the app container's exit code 0; anything else
(another exit code, a task that could not start, a timeout) is a
:class:`~sbcntrctl.deploy.ecs.DeployError` naming the task, its stop code and
reason, and the exit code, and the service is not updated.

The same image, settings and log routing as the service, so the migration
reaches the database exactly as the new code will and its log lines arrive
with the backend's (FireLens, the task id as log stream), but its own task
role (``overrides.taskRoleArn``: ``sbcntr-<env>-<service>-migrate``, see
:func:`migration_role_arn`), the only role that may read the schema owner's
credentials (docs/database-access.md). RunTask then needs ``iam:PassRole``
on that role as well (Amazon ECS API Reference, "RunTask", overrides).
The task's health check does not matter here: ECS does not stop a task
started by RunTask for being unhealthy (Amazon ECS Developer Guide,
"Determining task health using container health checks").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from sbcntrctl import awsenv
from sbcntrctl.deploy.ecs import DeployError, Rendered

MIGRATE_COMMANDS: dict[str, list[str]] = {"backend": ["python", "-m", "backend", "migrate"]}
"""The services that own a database, and the command that migrates it."""

STARTED_BY = "sbcntrctl-migrate"
ABNORMAL_STOP_CODES = frozenset(
    {
        "TaskFailedToStart",
        "UserInitiated",
        "ServiceSchedulerInitiated",
        "SpotInterruption",
        "TerminationNotice",
    }
)
"""Stop codes (DescribeTasks ``stopCode``) of a task that did not end by its own exit."""
DEFAULT_TIMEOUT_SECONDS = 600.0
POLL_SECONDS = 6.0


@dataclass(frozen=True)
class MigrationTask:
    task_arn: str
    exit_code: int | None
    stop_code: str
    stopped_reason: str

    @property
    def task_id(self) -> str:
        return self.task_arn.rsplit("/", 1)[-1]


def has_migrations(service: str) -> bool:
    return service in MIGRATE_COMMANDS


def migration_role_arn(task_role_arn: str) -> str:
    """The migration's role next to the service's task role: ``...-task`` -> ``...-migrate``."""
    if not task_role_arn.endswith("-task"):
        msg = f"task role {task_role_arn} does not end in -task: no migration role beside it"
        raise DeployError(msg)
    return task_role_arn.removesuffix("-task") + "-migrate"


def run_task_input(rendered: Rendered, task_definition_arn: str) -> dict[str, Any]:
    """RunTask's parameters: the service's network and capacity, the migrate command."""
    sd = rendered.service_definition
    params: dict[str, Any] = {
        "cluster": rendered.cluster,
        "taskDefinition": task_definition_arn,
        "count": 1,
        "startedBy": STARTED_BY,
        "networkConfiguration": sd["networkConfiguration"],
        "overrides": {
            "taskRoleArn": migration_role_arn(rendered.task_definition["taskRoleArn"]),
            "containerOverrides": [
                {"name": rendered.service, "command": MIGRATE_COMMANDS[rendered.service]}
            ],
        },
    }
    # No tags: tagging on RunTask needs ecs:TagResource besides ecs:RunTask
    # (Amazon ECS Developer Guide, "Grant permission to tag resources on
    # creation"); the task is found by its startedBy instead.
    for key in ("capacityProviderStrategy", "platformVersion"):
        if key in sd:
            params[key] = sd[key]
    if "capacityProviderStrategy" not in params:
        params["launchType"] = "FARGATE"
    return params


def outcome(task: dict[str, Any], container: str) -> MigrationTask:
    """What a stopped task (a DescribeTasks ``tasks`` entry) says about ``container``."""
    app: dict[str, Any] = next(
        (c for c in task.get("containers", []) if c.get("name") == container), {}
    )
    return MigrationTask(
        task_arn=task["taskArn"],
        exit_code=app.get("exitCode"),
        stop_code=task.get("stopCode", ""),
        stopped_reason=" / ".join(
            reason for reason in (task.get("stoppedReason"), app.get("reason")) if reason
        ),
    )


def run(
    rendered: Rendered,
    task_definition_arn: str,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    poll_seconds: float = POLL_SECONDS,
) -> MigrationTask:
    """Run the migration task of ``task_definition_arn``; return when it exited 0.

    Raises :class:`DeployError` when the task cannot start, exits otherwise,
    or is still running after ``timeout_seconds`` (it is left running: a
    migration must not be cut short by the tool that waits for it).
    """
    if not has_migrations(rendered.service):
        msg = f"{rendered.service} has no database migrations"
        raise DeployError(msg)
    client = awsenv.client("ecs")
    try:
        started = client.run_task(**run_task_input(rendered, task_definition_arn))
    except ClientError as exc:
        msg = f"migration task did not start: {exc}"
        raise DeployError(msg) from None
    if started.get("failures") or not started.get("tasks"):
        reasons = "; ".join(
            f"{f.get('arn', '')} {f.get('reason', '')} {f.get('detail', '')}".strip()
            for f in started.get("failures", [])
        )
        msg = f"migration task did not start: {reasons or 'no task returned'}"
        raise DeployError(msg)
    task_arn = started["tasks"][0]["taskArn"]
    deadline = time.monotonic() + timeout_seconds
    polls = 0
    while True:
        described = client.describe_tasks(cluster=rendered.cluster, tasks=[task_arn])["tasks"]
        if described and described[0].get("lastStatus") == "STOPPED":
            result = outcome(described[0], rendered.service)
            break
        if time.monotonic() > deadline:
            msg = (
                f"migration task {task_arn} not stopped after {timeout_seconds:g} s "
                "(left running; the service was not updated)"
            )
            raise DeployError(msg)
        # Short first waits (a migration with nothing to do ends in seconds), then poll_seconds.
        time.sleep(min(poll_seconds, 0.25 * 2**polls))
        polls += 1
    if result.exit_code != 0 or result.stop_code in ABNORMAL_STOP_CODES:
        msg = (
            f"migration task {result.task_arn} failed: exit code {result.exit_code}, "
            f"stop code {result.stop_code or '-'}, reason: {result.stopped_reason or '-'}"
        )
        raise DeployError(msg)
    return result


def run_latest(
    rendered: Rendered,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    poll_seconds: float = POLL_SECONDS,
) -> MigrationTask:
    """Register the rendered task definition (the release's image) and run its migration."""
    client = awsenv.client("ecs")
    registered = client.register_task_definition(**rendered.task_definition)["taskDefinition"]
    return run(rendered, registered["taskDefinitionArn"], timeout_seconds, poll_seconds)


def before_update(rendered: Rendered, wait_seconds: float) -> Callable[[str], object] | None:
    """The ``before_update`` step of :func:`ecs.deploy` for ``rendered``: its migration.

    ``None`` for a service without a database. The migration waits at most
    ``wait_seconds`` (:data:`DEFAULT_TIMEOUT_SECONDS` when 0: it is always
    waited for, the service must not change before it ends).
    """
    if not has_migrations(rendered.service):
        return None
    timeout = wait_seconds or DEFAULT_TIMEOUT_SECONDS
    return lambda arn: run(rendered, arn, timeout)
