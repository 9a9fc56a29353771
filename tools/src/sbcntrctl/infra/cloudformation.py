"""Stack operations through the CloudFormation API (boto3).

The region is :mod:`sbcntrctl.awsenv`'s rule; credentials and endpoint come
from the standard AWS environment (``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` for an
emulator). Every failed call raises :class:`AwsError`, one line with the fix.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sbcntrctl import awsenv
from sbcntrctl.deploy.aws import AwsError, Client
from sbcntrctl.infra.stacks import (
    BY_KEY,
    DEPLOYMENT_SETTINGS,
    ENVIRONMENT_PARAMETERS,
    FOR_CHECKS,
    FROM_OUTPUTS,
    INFRA_DIR,
    OPTIONAL,
    STACKS,
    Stack,
)

POLL_SECONDS = 5.0
DONE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE")


class InfraError(Exception):
    """A stack operation failed; the message says which stack and why."""


def _cfn() -> Any:
    return Client("cloudformation")


def describe(stack_name: str) -> dict[str, Any] | None:
    """The stack, or None when it does not exist (or was deleted)."""
    try:
        stacks = _cfn().describe_stacks(StackName=stack_name)["Stacks"]
    except AwsError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    live = [s for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"]
    return dict(live[0]) if live else None


@dataclass
class ChangeSet:
    """A created change set: its id and one line per resource change."""

    stack_name: str
    change_set_id: str | None
    changes: list[str]


def plan(
    stack: Stack,
    env: str,
    parameters: Mapping[str, str],
    directory: Path = INFRA_DIR,
    poll_seconds: float = POLL_SECONDS,
) -> ChangeSet:
    """Create a change set for ``stack`` and describe it; no id when nothing changes.

    Parameters the template declares and ``parameters`` does not give keep their
    previous value on an update (their default on creation). ``EnvName`` is ``env``.
    """
    name = stack.name(env)
    declared = stack.parameters(directory)
    given = {k: v for k, v in parameters.items() if k in declared}
    if "EnvName" in declared:
        given["EnvName"] = env
    existing = describe(name)
    previous = {p["ParameterKey"] for p in (existing or {}).get("Parameters", [])}
    for key, value in ENVIRONMENT_PARAMETERS.get(env, {}).items():
        # The environment's own value on creation (and when the stack predates the
        # parameter); afterwards the stack keeps what it was created with.
        if key in declared and key not in given and key not in previous:
            given[key] = value
    if existing is not None and existing["StackStatus"] == "ROLLBACK_COMPLETE":
        msg = (
            f"{name} is ROLLBACK_COMPLETE (its creation failed; see its events): delete it "
            f"(sbcntrctl infra delete {env} --only {stack.key}), then deploy again"
        )
        raise InfraError(msg)
    creating = existing is None or existing["StackStatus"] == "REVIEW_IN_PROGRESS"
    params: list[dict[str, str | bool]] = [
        {"ParameterKey": k, "ParameterValue": v} for k, v in sorted(given.items())
    ]
    if not creating:
        params += [
            {"ParameterKey": k, "UsePreviousValue": True}
            for k in sorted(declared & previous - set(given))
        ]
    change_set_name = "sbcntrctl-" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    try:
        created = _cfn().create_change_set(
            StackName=name,
            ChangeSetName=change_set_name,
            ChangeSetType="CREATE" if creating else "UPDATE",
            TemplateBody=stack.path(directory).read_text(),
            Parameters=params,
            Capabilities=["CAPABILITY_NAMED_IAM"],
            Tags=[{"Key": "Service", "Value": "sbcntr"}, {"Key": "Environment", "Value": env}],
        )
    except AwsError as exc:
        # CloudFormation fails the change set ("didn't contain changes", below);
        # an emulator may refuse the request at once instead.
        if "No updates are to be performed" in str(exc):
            return ChangeSet(name, None, [])
        msg = f"{name}: {exc}"
        raise InfraError(msg) from exc
    change_set_id = created["Id"]
    described = _wait_for_change_set(change_set_id, name, poll_seconds)
    if described["Status"] == "FAILED":
        reason = described.get("StatusReason", "")
        if "didn't contain changes" in reason or "No updates" in reason:
            _cfn().delete_change_set(ChangeSetName=change_set_id, StackName=name)
            return ChangeSet(name, None, [])
        msg = f"{name}: change set failed: {reason}"
        raise InfraError(msg)
    return ChangeSet(name, change_set_id, [_describe_change(c) for c in described["Changes"]])


def _wait_for_change_set(change_set_id: str, name: str, poll_seconds: float) -> dict[str, Any]:
    while True:
        described: dict[str, Any] = _cfn().describe_change_set(
            ChangeSetName=change_set_id, StackName=name
        )
        if described["Status"] in ("CREATE_COMPLETE", "FAILED"):
            return described
        time.sleep(poll_seconds)


def _describe_change(change: Mapping[str, Any]) -> str:
    rc = change.get("ResourceChange", {})
    replacement = rc.get("Replacement")
    note = f" (replacement: {replacement})" if rc.get("Action") == "Modify" else ""
    action = rc.get("Action", "?")
    return f"{action:<7} {rc.get('LogicalResourceId')} [{rc.get('ResourceType')}]{note}"


def discard(change_set: ChangeSet) -> None:
    """Delete a change set that will not be executed."""
    if change_set.change_set_id is not None:
        _cfn().delete_change_set(
            ChangeSetName=change_set.change_set_id, StackName=change_set.stack_name
        )


def execute(change_set: ChangeSet, wait_seconds: float, poll_seconds: float = POLL_SECONDS) -> str:
    """Execute the change set and wait; raises InfraError with the failed events."""
    if change_set.change_set_id is None:
        return "no changes"
    started = datetime.now(UTC)
    try:
        _cfn().execute_change_set(
            ChangeSetName=change_set.change_set_id, StackName=change_set.stack_name
        )
    except AwsError as exc:
        msg = f"{change_set.stack_name}: {exc}"
        raise InfraError(msg) from exc
    return wait(change_set.stack_name, started, wait_seconds, poll_seconds, DONE)


def wait(
    stack_name: str,
    since: datetime,
    wait_seconds: float,
    poll_seconds: float,
    success: tuple[str, ...],
) -> str:
    """Poll until the stack leaves *_IN_PROGRESS; return its status if in ``success``."""
    deadline = time.monotonic() + wait_seconds
    while True:
        stack = describe(stack_name)
        status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
        if not status.endswith("_IN_PROGRESS"):
            if status in success:
                return status
            msg = f"{stack_name}: {status}\n" + "\n".join(failure_events(stack_name, since))
            raise InfraError(msg)
        if time.monotonic() > deadline:
            msg = f"{stack_name}: still {status} after {wait_seconds:g} s"
            raise InfraError(msg)
        time.sleep(poll_seconds)


def failure_events(stack_name: str, since: datetime) -> list[str]:
    """The failed resource events of the stack since ``since``, oldest first."""
    events = _cfn().describe_stack_events(StackName=stack_name)["StackEvents"]
    failed = [
        e for e in events if e["ResourceStatus"].endswith("_FAILED") and e["Timestamp"] >= since
    ]
    return [
        f"  {e['LogicalResourceId']} [{e['ResourceType']}] {e['ResourceStatus']}: "
        f"{e.get('ResourceStatusReason', '')}"
        for e in reversed(failed)
    ]


def delete(stack_name: str, wait_seconds: float, poll_seconds: float = POLL_SECONDS) -> str:
    """Delete the stack and wait until it is gone."""
    if describe(stack_name) is None:
        return "absent"
    started = datetime.now(UTC)
    try:
        _cfn().delete_stack(StackName=stack_name)
    except AwsError as exc:
        msg = f"{stack_name}: {exc}"
        raise InfraError(msg) from exc
    return wait(stack_name, started, wait_seconds, poll_seconds, ("DELETE_COMPLETE",))


def outputs(stack_name: str) -> dict[str, str]:
    stack = describe(stack_name)
    if stack is None:
        msg = f"{stack_name} does not exist: run `sbcntrctl infra deploy` first"
        raise InfraError(msg)
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def task_variables(env: str) -> dict[str, str]:
    """Every task definition variable the stacks of ``env`` provide, with the
    environment's deployment settings (``DEPLOYMENT_SETTINGS``: stg and prod deploy
    blue/green).

    Raises InfraError naming each stack that is missing and each output that is;
    an optional stack whose every variable is optional (the test-traffic hook's)
    may be missing, its variables are then unset.
    """
    found: dict[str, str] = {}
    by_stack: dict[str, dict[str, str]] = {}
    missing: list[str] = []
    for stack in STACKS:
        if stack.key not in {key for key, _ in FROM_OUTPUTS.values()} | {"network"}:
            continue
        try:
            by_stack[stack.key] = outputs(stack.name(env))
        except InfraError as exc:
            needed = {v for v, (key, _) in FROM_OUTPUTS.items() if key == stack.key}
            if not (stack.optional and needed <= OPTIONAL):
                missing.append(str(exc))
    for variable, (key, output) in {**FROM_OUTPUTS, **FOR_CHECKS}.items():
        if key not in by_stack:
            continue
        if output in by_stack[key]:
            found[variable] = by_stack[key][output]
        elif variable not in OPTIONAL:
            missing.append(f"{variable}: output {output} of {BY_KEY[key].name(env)}")
    if missing:
        raise InfraError("missing from the stacks:\n  " + "\n  ".join(missing))
    network = describe(BY_KEY["network"].name(env)) or {}
    # arn:aws:cloudformation:<region>:<account>:stack/<name>/<id>
    found["AWS_ACCOUNT_ID"] = network["StackId"].split(":")[4]
    found["AWS_REGION"] = awsenv.region()
    found["ENV_NAME"] = env
    return {**DEPLOYMENT_SETTINGS.get(env, {}), **found}


def services_in_cluster(env: str) -> list[str]:
    """The ECS services still in the environment's cluster (they hold its target groups
    and security groups, so the stacks cannot be deleted under them)."""
    platform = describe(BY_KEY["platform"].name(env))
    if platform is None:
        return []
    cluster = {o["OutputKey"]: o["OutputValue"] for o in platform.get("Outputs", [])}.get(
        "EcsCluster"
    )
    if cluster is None:
        return []
    ecs = Client("ecs")
    arns = ecs.list_services(cluster=cluster).get("serviceArns", [])
    names = []
    for start in range(0, len(arns), 10):  # DescribeServices takes at most 10
        described = ecs.describe_services(cluster=cluster, services=arns[start : start + 10])
        names += [s["serviceName"] for s in described["services"] if s["status"] != "INACTIVE"]
    return sorted(names)
