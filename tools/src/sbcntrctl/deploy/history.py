"""ECS's own record of a service's deployments, and what the operator is told from it.

ECS records every deployment of a service, however it was started (console,
CLI, this tool, CloudFormation): ListServiceDeployments, then
DescribeServiceDeployments (lifecycle stage, status, rollback, the alarms and
circuit breaker that watched it, the lifecycle hooks) and DescribeServiceRevisions
(the task definition a deployment put in place). Amazon ECS Developer Guide,
"View service history using Amazon ECS service deployments"; Amazon ECS API
Reference, ListServiceDeployments, DescribeServiceDeployments,
DescribeServiceRevisions (IAM: ecs:ListServiceDeployments,
ecs:DescribeServiceDeployments, ecs:DescribeServiceRevisions).

Where the history cannot be read (an emulator without these calls, a role
without the permissions), :class:`Unavailable` says why and the caller falls
back on the ``sbcntr:steady-state`` tags.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sbcntrctl.deploy.aws import AwsError, Client, error_code

# Codes that mean "these calls are not there for this caller", not "the call
# was wrong": the fallback applies. An HTTP 5xx code is an endpoint that does
# not implement the call (an emulator).
UNAVAILABLE = (
    "UnknownOperationException",
    "InvalidAction",
    "NotImplemented",
    "AccessDeniedException",
    "AccessDenied",
)
# DescribeServiceDeployments and DescribeServiceRevisions take at most 20 ARNs.
BATCH = 20
ROLLED_BACK = (
    "ROLLBACK_REQUESTED",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_SUCCESSFUL",
    "ROLLBACK_FAILED",
)
FINAL = ("SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED")
HOOK_FAILED = ("FAILED", "TIMED_OUT")


class Unavailable(Exception):  # noqa: N818 - names the state, like ECS's own errors
    """The deployment history cannot be read here; ``str()`` says why."""


def _call(operation: str, **params: Any) -> Any:
    try:
        return getattr(Client("ecs"), operation)(**params)
    except AwsError as exc:
        code = error_code(exc)
        if code in UNAVAILABLE or code.isdigit():
            grant = " (grant it to the caller)" if code.startswith("AccessDenied") else ""
            msg = f"ECS deployment history not readable: {exc.operation} gave {code}{grant}"
            raise Unavailable(msg) from exc
        raise


def briefs(
    cluster: str, service: str, *, statuses: list[str] | None = None, after: datetime | None = None
) -> list[dict[str, Any]]:
    """The service's deployments (ServiceDeploymentBrief), newest first."""
    params: dict[str, Any] = {"cluster": cluster, "service": service}
    if statuses:
        params["status"] = statuses
    if after is not None:
        params["createdAt"] = {"after": after}
    found: list[dict[str, Any]] = []
    while True:
        page = _call("list_service_deployments", **params)
        found += page.get("serviceDeployments", [])
        if not page.get("nextToken"):
            break
        params["nextToken"] = page["nextToken"]
    return sorted(found, key=lambda b: b["createdAt"], reverse=True)


def ongoing(cluster: str, service: str) -> dict[str, Any] | None:
    """The service's deployment still PENDING or IN_PROGRESS (ServiceDeployment), if any."""
    found = briefs(cluster, service, statuses=["PENDING", "IN_PROGRESS"])
    if not found:
        return None
    described = describe([found[0]["serviceDeploymentArn"]])
    return described[0] if described else None


def describe(arns: list[str]) -> list[dict[str, Any]]:
    """DescribeServiceDeployments of ``arns``, in their order."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(arns), BATCH):
        page = _call(
            "describe_service_deployments", serviceDeploymentArns=arns[start : start + BATCH]
        )
        found.update({d["serviceDeploymentArn"]: d for d in page.get("serviceDeployments", [])})
    return [found[arn] for arn in arns if arn in found]


def task_definitions(revision_arns: list[str]) -> dict[str, str]:
    """Service revision ARN -> the task definition ARN it runs."""
    found: dict[str, str] = {}
    unique = list(dict.fromkeys(revision_arns))
    for start in range(0, len(unique), BATCH):
        page = _call(
            "describe_service_revisions", serviceRevisionArns=unique[start : start + BATCH]
        )
        found.update(
            {r["serviceRevisionArn"]: r["taskDefinition"] for r in page["serviceRevisions"]}
        )
    return found


def ran(deployment: Mapping[str, Any]) -> bool:
    """The deployment SUCCEEDED with at least one task of its revision running.

    A deployment to a service at 0 tasks succeeds too, with nothing run: its
    revision was never seen working, so it is no rollback target.
    """
    target = deployment.get("targetServiceRevision", {})
    return deployment.get("status") == "SUCCESSFUL" and target.get("runningTaskCount", 0) >= 1


@dataclass
class Candidate:
    """An earlier task definition, and why it may or may not be rolled back to."""

    task_definition: str
    ran: bool


def candidates(cluster: str, service: str) -> Iterator[Candidate]:
    """The task definitions of the service's successful deployments, newest first
    (ECS keeps 90 days of them)."""
    successful = briefs(cluster, service, statuses=["SUCCESSFUL"])
    for start in range(0, len(successful), BATCH):
        batch = describe([b["serviceDeploymentArn"] for b in successful[start : start + BATCH]])
        revisions = task_definitions([d["targetServiceRevision"]["arn"] for d in batch])
        for deployment in batch:
            arn = revisions.get(deployment["targetServiceRevision"]["arn"])
            if arn:
                yield Candidate(arn, ran(deployment))


def stage(deployment: Mapping[str, Any]) -> str:
    """One line on where a deployment is: status, lifecycle stage, tasks, hooks, traffic."""
    target = deployment.get("targetServiceRevision", {})
    parts = [deployment.get("status", "?")]
    if deployment.get("lifecycleStage"):
        parts.append(deployment["lifecycleStage"])
    if target:
        parts.append(
            f"{target.get('runningTaskCount', 0)}/{target.get('requestedTaskCount', 0)} tasks"
        )
    for kind in ("Test", "Production"):
        weight = target.get(f"requested{kind}TrafficWeight")
        if weight is not None:
            parts.append(f"{weight:g}% {kind.lower()} traffic")
    for hook in deployment.get("lifecycleHookDetails", []):
        parts.append(f"hook {_name(hook.get('targetArn', '?'))} {hook.get('status', '?')}")
    return ", ".join(parts)


def hook_stages(deployment: Mapping[str, Any]) -> dict[str, str]:
    """Hook ARN -> the lifecycle stage it runs at now (while the deployment goes forward).

    DeploymentLifecycleHookDetail names no stage: the deployment's
    ``lifecycleStage`` is the hook's while the hook runs. Once the deployment
    rolls back, its stages are the rollback's, so nothing is read then.
    """
    if deployment.get("status") not in ("PENDING", "IN_PROGRESS"):
        return {}
    stage_now = deployment.get("lifecycleStage")
    return {
        h["targetArn"]: stage_now
        for h in deployment.get("lifecycleHookDetails", [])
        if stage_now and h.get("targetArn") and h.get("status") != "SUCCEEDED"
    }


def _hook_stage(deployment: Mapping[str, Any], arn: str, seen: Mapping[str, str]) -> str:
    """Where hook ``arn`` ran: as seen while following, else its only configured stage."""
    if arn in seen:
        return seen[arn]
    configured = [
        stage_name
        for hook in deployment.get("deploymentConfiguration", {}).get("lifecycleHooks", [])
        if hook.get("hookTargetArn") == arn
        for stage_name in hook.get("lifecycleStages", [])
    ]
    return configured[0] if len(configured) == 1 else ""


def cause(deployment: Mapping[str, Any], seen_stages: Mapping[str, str] | None = None) -> str:
    """Who stopped or rolled back a deployment, and why ('' when it succeeded).

    A failed lifecycle hook is named with the stage it failed at (``seen_stages``:
    what :func:`hook_stages` read while following the deployment)."""
    if deployment.get("status") == "SUCCESSFUL":
        return ""
    alarms = deployment.get("alarms", {})
    hooks = [
        h for h in deployment.get("lifecycleHookDetails", []) if h.get("status") in HOOK_FAILED
    ]
    breaker = deployment.get("deploymentCircuitBreaker", {})
    if alarms.get("status") == "TRIGGERED":
        names = ", ".join(alarms.get("triggeredAlarmNames", [])) or "?"
        who = f"by alarm {names}"
    elif hooks:
        named = []
        for hook in hooks:
            arn = hook.get("targetArn", "?")
            at = _hook_stage(deployment, arn, seen_stages or {})
            named.append(f"{_name(arn)} ({hook['status']})" + (f" at {at}" if at else ""))
        who = "by lifecycle hook " + ", ".join(named)
    elif breaker.get("status") == "TRIGGERED":
        who = (
            f"by the circuit breaker ({breaker.get('failureCount', '?')} failed tasks, "
            f"threshold {breaker.get('threshold', '?')})"
        )
    else:
        who = ""  # a person or another deployment: ECS's reason says
    status = deployment.get("status")
    if status == "ROLLBACK_FAILED":
        verb = "could not be rolled back (ROLLBACK_FAILED) after being stopped"
    else:
        verb = "rolled back" if status in ROLLED_BACK else "stopped"
    reasons = [
        r
        for r in (deployment.get("statusReason"), deployment.get("rollback", {}).get("reason"))
        if r
    ]
    because = f": {'; '.join(dict.fromkeys(reasons))}" if reasons else ""
    return " ".join(filter(None, (verb, who))) + because


def _name(arn: str) -> str:
    """The last part of an ARN (a Lambda function's name, a revision)."""
    return arn.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
