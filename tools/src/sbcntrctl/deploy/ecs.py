"""The deploy operations against ECS (boto3), with what the operator relies on:

- a revision becomes a rollback target only once a deployment of it reached
  steady state with at least one task running (a deployment to a service at
  0 tasks succeeds with nothing run). Rollback reads ECS's own deployment
  history (``history``), which records deployments made any way; where it
  cannot be read, the ``sbcntr:steady-state`` tag (the time) this tool puts
  on such a revision: the deploy that waits tags it; a deploy or rollback
  that finds the service steady on an untagged revision (deployed with
  ``--wait 0``) tags it then.
- while it waits, each change of the deployment's lifecycle stage is passed
  to ``progress`` as one line, and a deployment ECS stopped is reported with
  who stopped it (alarm, lifecycle hook and its stage, circuit breaker) and
  why; by default it waits as long as the strategy may take (bake times and
  hook timeouts of a blue/green or canary deployment included);
- a rollback during a deployment (a blue/green one in its bake time) is ECS's
  own rollback of that deployment (StopServiceDeployment);
- a deploy keeps the running ``desiredCount`` (target tracking or a schedule
  set it) unless the caller passes one;
- a deployment that fails (the circuit breaker rolled it back) is reported
  with the verdict and the stopped tasks' reasons, apart from a timeout.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sbcntrctl.deploy import (
    exec_access,
    fault_injection,
    firelens,
    history,
    metric_math,
    preflight,
    scaling,
    strategy,
    template,
    tracing_variant,
    traffic_shift,
    verify,
)
from sbcntrctl.deploy.aws import Client
from sbcntrctl.deploy.aws import DeployError as DeployError  # callers catch ecs.DeployError

DEFAULT_DIR = Path(__file__).resolve().parents[4] / "taskdefs"
STEADY_TAG = "sbcntr:steady-state"
POLL_SECONDS = 5.0
# How long a rolling update may take by default; a blue/green or canary
# deployment adds its bake times and hook timeouts (strategy.extra_seconds).
DEFAULT_WAIT_SECONDS = 600.0
# ECS stamps createdAt with its clock: a deployment is looked for from a
# little before the local time of the call.
CLOCK_SKEW = timedelta(minutes=2)
Progress = Callable[[str], object]
# CreateService keys UpdateService also takes (desiredCount apart: see deploy).
UPDATABLE = (
    "capacityProviderStrategy",
    "deploymentConfiguration",
    "networkConfiguration",
    "platformVersion",
    "healthCheckGracePeriodSeconds",
    "enableExecuteCommand",
    "loadBalancers",
    "propagateTags",
    "enableECSManagedTags",
)


class DeploymentFailedError(DeployError):
    """ECS gave up on the deployment (an alarm, a lifecycle hook or the circuit
    breaker stopped it, and it was rolled back)."""


class DeploymentTimeoutError(DeployError):
    """The deployment did not reach steady state in the time allowed."""


@dataclass
class Rendered:
    service: str
    cluster: str
    task_definition: dict[str, Any]
    service_definition: dict[str, Any]
    scaling: dict[str, Any]
    task_role_policy: dict[str, Any] | None = None
    az_count: int | None = None  # the network's AzCount (AZ_COUNT), when known

    @property
    def service_name(self) -> str:
        return service_name(self.service)


def service_name(service: str) -> str:
    return f"sbcntr-{service}"


def render(service: str, env: Mapping[str, str], directory: Path = DEFAULT_DIR) -> Rendered:
    """Render the three templates of ``service``; raises MissingVariables naming each."""
    missing: list[str] = []
    documents: dict[str, Any] = {}
    for name in ("task-def", "service-def", "scaling"):
        try:
            documents[name] = template.render_json(directory / service / f"{name}.json", env)
        except template.MissingVariables as exc:
            missing += [n for n in exc.names if n not in missing]
    if "ECS_CLUSTER" not in env:
        missing.append("ECS_CLUSTER")
    if missing:
        raise template.MissingVariables(directory / service, missing)
    return Rendered(
        service,
        env["ECS_CLUSTER"],
        fault_injection.apply(
            tracing_variant.apply(documents["task-def"], service, env, directory), env, directory
        ),
        documents["service-def"],
        documents["scaling"],
        tracing_variant.task_role_policy(service, env, directory),
        int(env["AZ_COUNT"]) if env.get("AZ_COUNT", "").isdigit() else None,
    )


def problems(rendered: Rendered) -> list[verify.Problem]:
    """What the definitions break, checked offline (no AWS call)."""
    return [
        *verify.task_definition(rendered.task_definition),
        *firelens.problems(rendered.task_definition),
        *tracing_variant.problems(rendered.task_definition, rendered.task_role_policy),
        *fault_injection.problems(rendered.task_definition, rendered.service_definition),
        *exec_access.problems(
            rendered.task_definition,
            bool(rendered.service_definition.get("enableExecuteCommand")),
        ),
        *verify.service_definition(rendered.service_definition),
        *strategy.problems(rendered.service_definition),
        *verify.scaling(rendered.scaling),
        *metric_math.problems(rendered.scaling, rendered.service_definition),
    ]


def account_problems(rendered: Rendered) -> list[verify.Problem]:
    """What the account lacks for this deploy: cluster, capacity provider, images,
    roles, log groups, secrets, the alarms its deployments roll back on, subnets in every
    Availability Zone of the network; the target groups, listener rules, hook function
    and roles a BLUE_GREEN or CANARY definition names; and a ROLLING definition for a service whose
    production traffic a blue/green deployment left on its other target group."""
    providers = rendered.service_definition.get("capacityProviderStrategy", [])
    cluster = preflight.cluster(rendered.cluster, providers)
    # The service is looked up only in a cluster that exists.
    running = None if cluster else describe_service(rendered.cluster, rendered.service_name)
    return [
        *cluster,
        *preflight.images(rendered.task_definition),
        *preflight.references(rendered.task_definition),
        *preflight.alarms(rendered.service_definition),
        *preflight.subnets(rendered.service_definition, rendered.az_count),
        *strategy.back_to_rolling(running, rendered.service_definition),
        *traffic_shift.problems(rendered.service_definition),
    ]


def describe_service(cluster: str, name: str) -> dict[str, Any] | None:
    """The ACTIVE service ``name`` of ``cluster``, None when there is none."""
    found = Client("ecs").describe_services(cluster=cluster, services=[name])["services"]
    active = [s for s in found if s.get("status") == "ACTIVE"]
    return dict(active[0]) if active else None


def _current_task_definition(rendered: Rendered) -> dict[str, Any] | None:
    service = describe_service(rendered.cluster, rendered.service_name)
    if service is None:
        return None
    described = Client("ecs").describe_task_definition(taskDefinition=service["taskDefinition"])
    return dict(described["taskDefinition"])


def _comparable(td: Mapping[str, Any]) -> dict[str, Any]:
    """A task definition without what ECS adds on registration (ids, defaults, empty lists)."""
    kept = {k: v for k, v in td.items() if k not in verify.DESCRIBE_ONLY and k != "tags"}
    cleaned: dict[str, Any] = _without_empty(kept)
    for container in cleaned.get("containerDefinitions", []):
        if container.get("cpu") == 0:
            del container["cpu"]
        for mapping in container.get("portMappings", []):
            if mapping.get("hostPort") == mapping.get("containerPort"):
                mapping.pop("hostPort", None)
    return cleaned


def _without_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_empty(v) for k, v in value.items() if v not in ([], {}, None)}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


def diff(rendered: Rendered, *, apply_capacity: bool = False) -> str:
    """The task definition diff (registered -> rendered), then the scaling plan."""
    current = _current_task_definition(rendered)
    before = json.dumps(_comparable(current or {}), indent=2, sort_keys=True).splitlines()
    after = json.dumps(_comparable(rendered.task_definition), indent=2, sort_keys=True).splitlines()
    label = current["taskDefinitionArn"] if current else "(no service yet)"
    lines = list(difflib.unified_diff(before, after, label, "rendered", lineterm=""))
    change = scaling.plan(
        rendered.scaling, rendered.cluster, rendered.service_name, apply_capacity=apply_capacity
    )
    return "\n".join([*lines, *(f"scaling: {line}" for line in change.lines())])


@dataclass
class Result:
    task_definition_arn: str
    revision: int
    image: str
    notes: list[str] = field(default_factory=list)


def deploy(
    rendered: Rendered,
    wait_seconds: float | None = None,
    *,
    desired_count: int | None = None,
    apply_capacity: bool = False,
    before_update: Callable[[str], object] | None = None,
    progress: Progress | None = None,
) -> Result:
    """Check, register, create or update the service, wait until steady, reconcile scaling.

    An existing service keeps its desiredCount unless ``desired_count`` is
    given; a new one starts with ``desired_count`` or the service definition's.
    ``before_update`` runs with the registered task definition's ARN before the
    service changes (the database migration); when it raises, nothing changes.
    ``progress`` receives one line per lifecycle stage while it waits;
    ``wait_seconds`` None: :func:`budget` of the service definition's strategy.
    """
    wait_seconds = budget(
        wait_seconds, rendered.service_definition.get("deploymentConfiguration", {})
    )
    found = problems(rendered) or account_problems(rendered)
    if found:
        raise DeployError(f"{len(found)} {_problems(len(found))}: " + "; ".join(map(str, found)))
    existing = describe_service(rendered.cluster, rendered.service_name)
    if existing is not None:
        record_if_steady(existing)
    if progress is not None:
        for line in unwatched(rendered.service_definition):
            progress(f"{rendered.service_name}: {line}")
    ecs = Client("ecs")
    registered = ecs.register_task_definition(**rendered.task_definition)["taskDefinition"]
    arn = registered["taskDefinitionArn"]
    if before_update is not None:
        before_update(arn)
    sd = rendered.service_definition
    since = datetime.now(UTC) - CLOCK_SKEW
    if existing is None:
        count = sd.get("desiredCount", 1) if desired_count is None else desired_count
        ecs.create_service(
            cluster=rendered.cluster,
            serviceName=rendered.service_name,
            taskDefinition=arn,
            **{**sd, "desiredCount": count},
        )
    else:
        keep = {} if desired_count is None else {"desiredCount": desired_count}
        ecs.update_service(
            cluster=rendered.cluster,
            service=rendered.service_name,
            taskDefinition=arn,
            **{k: sd[k] for k in UPDATABLE if k in sd},
            **keep,
        )
    wait(
        rendered.cluster,
        rendered.service_name,
        arn,
        wait_seconds,
        after="scaling not applied",
        progress=progress,
        since=since,
    )
    change = scaling.plan(
        rendered.scaling, rendered.cluster, rendered.service_name, apply_capacity=apply_capacity
    )
    scaling.apply(change)
    app = next(c for c in registered["containerDefinitions"] if c["name"] == rendered.service)
    return Result(
        arn, registered["revision"], app["image"], [f"scaling: {x}" for x in change.lines()]
    )


def unwatched(sd: Mapping[str, Any]) -> list[str]:
    """Warnings for rollback alarms already in ALARM: ECS does not monitor the
    alarms during a deployment that starts while one of them is in ALARM (AWS
    Copilot's manifest reference, ``deployment.rollback_alarms``, pointing at
    the Amazon ECS Developer Guide's "How CloudWatch alarms detect Amazon ECS
    deployment failures"). A fix released during an incident must still go out,
    so this warns and does not refuse."""
    firing = [n for n, state in preflight.alarm_states(dict(sd)).items() if state == "ALARM"]
    if not firing:
        return []
    return [
        f"alarm {', '.join(firing)} is in ALARM now: ECS will not roll this deployment back "
        "on its alarms (the circuit breaker still watches the tasks)"
    ]


def _problems(count: int) -> str:
    return "problem" if count == 1 else "problems"


def steady(service: Mapping[str, Any]) -> bool:
    """One deployment, PRIMARY, rolled out (COMPLETED) with every task running."""
    deployments = service.get("deployments", [])
    if len(deployments) != 1:
        return False
    only = deployments[0]
    return bool(
        only.get("status") == "PRIMARY"
        and only.get("rolloutState", "COMPLETED") == "COMPLETED"
        and only.get("runningCount", 0) >= only.get("desiredCount", 0)
    )


def ran_steady(service: Mapping[str, Any]) -> bool:
    """Steady with at least one task running: at 0 tasks nothing of the revision ran."""
    return steady(service) and service["deployments"][0].get("runningCount", 0) >= 1


def record_if_steady(service: Mapping[str, Any]) -> None:
    """Tag the service's revision as a rollback target when tasks of it run in steady state."""
    if ran_steady(service):
        mark_steady(service["taskDefinition"])


def mark_steady(arn: str) -> None:
    ecs = Client("ecs")
    tags = ecs.list_tags_for_resource(resourceArn=arn)["tags"]
    if not any(t["key"] == STEADY_TAG for t in tags):
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ecs.tag_resource(resourceArn=arn, tags=[{"key": STEADY_TAG, "value": now}])


def wait(
    cluster: str,
    name: str,
    arn: str,
    wait_seconds: float,
    *,
    after: str = "",
    progress: Progress | None = None,
    since: datetime | None = None,
) -> None:
    """Wait until ``name`` runs ``arn`` in steady state, then tag ``arn``; 0 s: do not wait.

    The deployment is followed in ECS's deployment history when it can be read
    (each new lifecycle stage goes to ``progress``), else in DescribeServices.
    Raises DeploymentFailedError when ECS stopped or rolled the deployment back
    (the message says whether an alarm, a lifecycle hook or the circuit breaker
    did, and why) and DeploymentTimeoutError when ``wait_seconds`` ran out;
    ``after`` is added to either message (what was not done because of it).
    ``arn`` is tagged only when at least one of its tasks runs.
    """
    if wait_seconds <= 0:
        return
    suffix = f"; {after}" if after else ""
    deadline = time.monotonic() + wait_seconds
    follower = _Follower(cluster, name, arn, since or datetime.now(UTC) - CLOCK_SKEW, progress)
    while True:
        service = describe_service(cluster, name)
        if service is None:
            msg = f"{cluster}/{name} disappeared during the deployment{suffix}"
            raise DeploymentFailedError(msg)
        deployment = follower.poll(service)
        if deployment is not None and deployment.get("status") in history.FINAL:
            if deployment["status"] == "SUCCESSFUL":
                if history.ran(deployment):
                    mark_steady(arn)
                return
            msg = (
                f"{name}: deployment of {_short(arn)} "
                f"{history.cause(deployment, follower.hook_stages)}{_stopped(cluster, arn)}{suffix}"
            )
            raise DeploymentFailedError(msg)
        if deployment is None:
            why = verdict(service, arn)
            if why:
                msg = f"{name}: deployment of {_short(arn)} failed: {why}"
                raise DeploymentFailedError(f"{msg}{_stopped(cluster, arn)}{suffix}")
            if service["taskDefinition"] == arn and steady(service):
                record_if_steady(service)
                return
        if time.monotonic() > deadline:
            if deployment is not None and deployment.get("status") in history.ROLLED_BACK:
                msg = (
                    f"{name}: deployment of {_short(arn)} "
                    f"{history.cause(deployment, follower.hook_stages)} "
                    f"(the rollback was still running after {wait_seconds:g} s)"
                    f"{_stopped(cluster, arn)}{suffix}"
                )
                raise DeploymentFailedError(msg)
            msg = (
                f"{name}: {_short(arn)} not steady after {wait_seconds:g} s "
                f"(the deployment may still complete: check with aws ecs describe-services)"
                f"{_stopped(cluster, arn)}{suffix}"
            )
            raise DeploymentTimeoutError(msg)
        time.sleep(min(POLL_SECONDS, max(0.1, deadline - time.monotonic())))


def _stopped(cluster: str, arn: str) -> str:
    reasons = stopped_reasons(cluster, arn)
    return f"; stopped tasks: {'; '.join(reasons)}" if reasons else ""


class _Follower:
    """The deployment of one revision, read from ECS's history while it runs.

    ``poll`` returns the ServiceDeployment once it is found (None before, and
    always once the history proved unreadable) and passes each new stage line
    to ``progress``; without the history, the rollout state of DescribeServices.
    """

    def __init__(
        self, cluster: str, name: str, arn: str, since: datetime, progress: Progress | None
    ) -> None:
        self.cluster, self.name, self.arn, self.since = cluster, name, arn, since
        self.progress = progress
        self.deployment_arn = ""
        self.available = True
        self.last = ""
        self.hook_stages: dict[str, str] = {}  # hook ARN -> the stage it was seen running at

    def _say(self, line: str) -> None:
        if line != self.last and self.progress is not None:
            self.progress(f"{self.name}: {line}")
        self.last = line

    def poll(self, service: Mapping[str, Any]) -> dict[str, Any] | None:
        if self.available:
            try:
                found = self._find()
            except history.Unavailable as exc:
                self.available = False
                self._say(f"{exc}; following DescribeServices")
            else:
                if found is not None:
                    self._say(history.stage(found))
                    self.hook_stages.update(history.hook_stages(found))
                return found
        self._say(_rollout(service, self.arn))
        return None

    def _find(self) -> dict[str, Any] | None:
        if not self.deployment_arn:
            briefs = history.briefs(self.cluster, self.name, after=self.since)
            described = history.describe([b["serviceDeploymentArn"] for b in briefs])
            revisions = history.task_definitions(
                [d["targetServiceRevision"]["arn"] for d in described]
            )
            mine = [
                d for d in described if revisions.get(d["targetServiceRevision"]["arn"]) == self.arn
            ]
            if not mine:
                return None
            self.deployment_arn = mine[0]["serviceDeploymentArn"]
            return mine[0]
        found = history.describe([self.deployment_arn])
        return found[0] if found else None


def _rollout(service: Mapping[str, Any], arn: str) -> str:
    """DescribeServices' view of the deployment of ``arn``: rollout state and tasks."""
    for deployment in service.get("deployments", []):
        if deployment.get("taskDefinition") == arn:
            return (
                f"rollout {deployment.get('rolloutState', '?')}, "
                f"{deployment.get('runningCount', 0)}/{deployment.get('desiredCount', 0)} tasks"
            )
    return f"waiting for the deployment of {_short(arn)}"


def verdict(service: Mapping[str, Any], arn: str) -> str:
    """Why ECS gave up deploying ``arn`` ('' while it has not)."""
    for deployment in service.get("deployments", []):
        if deployment.get("taskDefinition") == arn and deployment.get("rolloutState") == "FAILED":
            reason = deployment.get("rolloutStateReason") or "rollout FAILED"
            back = service["taskDefinition"]
            rolled = f" (rolled back to {_short(back)})" if back != arn else ""
            return f"{reason}{rolled}"
    if service["taskDefinition"] != arn:
        return (
            f"the service went back to {_short(service['taskDefinition'])} "
            "(the deployment circuit breaker rolled it back, or another deploy replaced it)"
        )
    return ""


def stopped_reasons(cluster: str, arn: str, limit: int = 3) -> list[str]:
    """Distinct stoppedReason of the stopped tasks of ``arn`` (with their containers' reasons)."""
    ecs = Client("ecs")
    family = arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]
    task_arns = ecs.list_tasks(cluster=cluster, family=family, desiredStatus="STOPPED")["taskArns"]
    if not task_arns:
        return []
    tasks = ecs.describe_tasks(cluster=cluster, tasks=task_arns[:100])["tasks"]
    counted: dict[str, int] = {}
    for task in tasks:
        if task.get("taskDefinitionArn") != arn:
            continue
        containers = [
            f"{c['name']}: {c['reason']}" for c in task.get("containers", []) if c.get("reason")
        ]
        reason = task.get("stoppedReason") or "stopped"
        text = " ".join(f"{reason} ({', '.join(containers)})".split()) if containers else reason
        counted[text] = counted.get(text, 0) + 1
    ordered = sorted(counted.items(), key=lambda item: -item[1])[:limit]
    return [f"{text} (x{n})" if n > 1 else text for text, n in ordered]


def _short(arn: str) -> str:
    """``family:revision`` of a task definition ARN."""
    return arn.rsplit("/", 1)[-1]


def budget(
    wait_seconds: float | None,
    deployment_configuration: Mapping[str, Any],
    rolling: float = DEFAULT_WAIT_SECONDS,
) -> float:
    """``wait_seconds``, or by default ``rolling`` (a rolling update's time) plus
    what the strategy adds (bake times, lifecycle hooks' timeouts)."""
    if wait_seconds is not None:
        return wait_seconds
    return rolling + strategy.extra_seconds(deployment_configuration)


def rollback(
    cluster: str,
    service: str,
    wait_seconds: float | None = None,
    progress: Progress | None = None,
) -> Result:
    """Point the service at the latest earlier revision that ran in steady state.

    Needs only the cluster and the service: no template, no deploy variable.
    A deployment still in progress (a blue/green one in its bake time, where
    the old revision still runs) is stopped with ECS's own rollback
    (StopServiceDeployment, ROLLBACK): traffic goes back to the revision it
    replaces. Otherwise the target is the newest lower revision of the family
    that ran: a SUCCESSFUL deployment of it in ECS's deployment history ran at
    least one task, or it is tagged ``sbcntr:steady-state``; the tag alone
    decides where the history cannot be read, and the service is updated to it
    (a deployment with the service's strategy).
    Revisions passed over are listed in the result's notes. The desiredCount is kept.
    ``wait_seconds`` None: :func:`budget` of the service's deployment configuration.
    """
    name = service_name(service)
    ecs = Client("ecs")
    running = describe_service(cluster, name)
    if running is None:
        msg = f"{cluster}/{name} does not exist: nothing to roll back"
        raise DeployError(msg)
    wait_seconds = budget(wait_seconds, running.get("deploymentConfiguration", {}))
    try:
        ongoing = history.ongoing(cluster, name)
    except history.Unavailable:
        ongoing = None
    if ongoing is not None:
        try:
            return _stop_with_rollback(service, ongoing, wait_seconds, progress)
        except history.Unavailable as exc:  # readable a moment ago: say which call failed
            raise DeployError(str(exc)) from exc
    record_if_steady(running)
    current = running["taskDefinition"]
    family, revision = _short(current).rsplit(":", 1)
    earlier = _earlier_revisions(family, int(revision))
    try:
        target, notes = _target_from_history(cluster, name, earlier)
    except history.Unavailable as exc:
        target, notes = _target_from_tags(earlier)
        notes.insert(0, f"{exc}: the {STEADY_TAG} tags decide")
    if target is None:
        msg = (
            f"{name} runs {_short(current)}: no earlier revision of {family} reached steady "
            "state with a task running, so there is nothing safe to roll back to"
        )
        raise DeployError(msg)
    since = datetime.now(UTC) - CLOCK_SKEW
    ecs.update_service(cluster=cluster, service=name, taskDefinition=target)
    wait(cluster, name, target, wait_seconds, progress=progress, since=since)
    td = ecs.describe_task_definition(taskDefinition=target)["taskDefinition"]
    app = next(c for c in td["containerDefinitions"] if c["name"] == service)
    return Result(target, td["revision"], app["image"], notes)


def _stop_with_rollback(
    service: str, deployment: Mapping[str, Any], wait_seconds: float, progress: Progress | None
) -> Result:
    """Stop ``deployment`` (in progress) with ECS's rollback and follow it to the end.

    Amazon ECS Developer Guide, "Stopping Amazon ECS service deployments": a
    PENDING or IN_PROGRESS deployment moves to ROLLBACK_REQUESTED, then back to
    the service revision it replaces (IAM: ecs:StopServiceDeployment).
    """
    name = service_name(service)
    arn = deployment["serviceDeploymentArn"]
    revisions = [deployment["targetServiceRevision"]["arn"]]
    revisions += [r["arn"] for r in deployment.get("sourceServiceRevisions", [])]
    tasks = history.task_definitions(revisions)
    stopped = tasks.get(revisions[0], "?")
    sources = [tasks[r] for r in revisions[1:] if r in tasks]
    if not sources:
        msg = f"{name}: the deployment of {_short(stopped)} replaces nothing to go back to"
        raise DeployError(msg)
    Client("ecs").stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    where = deployment.get("lifecycleStage", deployment.get("status", "?"))
    if progress is not None:
        progress(f"{name}: stopped the deployment of {_short(stopped)} at {where}, rolling back")
    deadline = time.monotonic() + wait_seconds
    last = ""
    while True:
        found = history.describe([arn])
        status = found[0].get("status", "?") if found else "?"
        line = history.stage(found[0]) if found else status
        if progress is not None and line != last:
            progress(f"{name}: {line}")
        last = line
        if status == "ROLLBACK_SUCCESSFUL":
            break
        if status in history.FINAL:
            msg = f"{name}: the rollback of the deployment of {_short(stopped)} ended {status}"
            raise DeploymentFailedError(msg)
        if time.monotonic() > deadline:
            msg = (
                f"{name}: the rollback of {_short(stopped)} still runs after {wait_seconds:g} s "
                "(check with aws ecs describe-service-deployments)"
            )
            raise DeploymentTimeoutError(msg)
        time.sleep(min(POLL_SECONDS, max(0.1, deadline - time.monotonic())))
    target = sources[0]
    td = Client("ecs").describe_task_definition(taskDefinition=target)["taskDefinition"]
    app = next(c for c in td["containerDefinitions"] if c["name"] == service)
    note = f"stopped the deployment of {_short(stopped)} at {where}: ECS rolled it back"
    return Result(target, td["revision"], app["image"], [note])


def _target_from_history(
    cluster: str, name: str, earlier: list[str]
) -> tuple[str | None, list[str]]:
    """The newest of ``earlier`` (ACTIVE lower revisions) that ran: a SUCCESSFUL
    deployment of it in ECS's history ran a task, or this tool tagged it (the
    history keeps 90 days)."""
    ran: dict[str, bool] = {}
    for candidate in history.candidates(cluster, name):
        ran[candidate.task_definition] = ran.get(candidate.task_definition, False) or candidate.ran
    notes: list[str] = []
    for arn in earlier:
        if ran.get(arn) or _tagged(arn):
            return arn, notes
        why = (
            "its deployments ran no task"
            if arn in ran
            else "no successful deployment of it in ECS's history, and no tag"
        )
        notes.append(f"skipped {_short(arn)}: {why}")
    return None, notes


def _target_from_tags(earlier: list[str]) -> tuple[str | None, list[str]]:
    """The newest of ``earlier`` tagged ``sbcntr:steady-state``."""
    notes: list[str] = []
    for arn in earlier:
        if _tagged(arn):
            return arn, notes
        notes.append(f"skipped {_short(arn)}: it never reached steady state")
    return None, notes


def _tagged(arn: str) -> bool:
    tags = Client("ecs").list_tags_for_resource(resourceArn=arn)["tags"]
    return any(t["key"] == STEADY_TAG for t in tags)


def _earlier_revisions(family: str, below: int) -> list[str]:
    """ACTIVE revisions of ``family`` lower than ``below``, newest first."""
    ecs = Client("ecs")
    arns: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = ecs.list_task_definitions(familyPrefix=family, status="ACTIVE", sort="DESC", **token)
        arns += page["taskDefinitionArns"]
        if not page.get("nextToken"):
            break
        token = {"nextToken": page["nextToken"]}
    revisions = [
        (int(rev), arn)
        for arn in arns
        for fam, rev in [_short(arn).rsplit(":", 1)]
        if fam == family and int(rev) < below
    ]
    return [arn for _, arn in sorted(revisions, reverse=True)]
