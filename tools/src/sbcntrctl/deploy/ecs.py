"""The deploy operations against ECS and Application Auto Scaling (boto3).

Credentials, region and endpoint come from the standard AWS environment
(``AWS_REGION``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` for an emulator).
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from sbcntrctl.deploy import firelens, template, verify

DEFAULT_DIR = Path(__file__).resolve().parents[4] / "taskdefs"


class DeployError(Exception):
    """A deploy step failed; the message says which and why."""


@dataclass
class Rendered:
    service: str
    cluster: str
    task_definition: dict[str, Any]
    service_definition: dict[str, Any]
    scaling: dict[str, Any]

    @property
    def service_name(self) -> str:
        return f"sbcntr-{self.service}"


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
        documents["task-def"],
        documents["service-def"],
        documents["scaling"],
    )


def problems(rendered: Rendered) -> list[verify.Problem]:
    return [
        *verify.task_definition(rendered.task_definition),
        *firelens.problems(rendered.task_definition),
        *verify.service_definition(rendered.service_definition),
        *verify.scaling(rendered.scaling),
    ]


def _ecs() -> Any:
    return boto3.client("ecs")


def _current_task_definition(rendered: Rendered) -> dict[str, Any] | None:
    services = _ecs().describe_services(cluster=rendered.cluster, services=[rendered.service_name])
    active = [s for s in services["services"] if s["status"] == "ACTIVE"]
    if not active:
        return None
    described = _ecs().describe_task_definition(taskDefinition=active[0]["taskDefinition"])
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


def diff(rendered: Rendered) -> str:
    """Unified diff from the registered task definition of the service to the rendered one."""
    current = _current_task_definition(rendered)
    before = json.dumps(_comparable(current or {}), indent=2, sort_keys=True).splitlines()
    after = json.dumps(_comparable(rendered.task_definition), indent=2, sort_keys=True).splitlines()
    label = current["taskDefinitionArn"] if current else "(no service yet)"
    return "\n".join(difflib.unified_diff(before, after, label, "rendered", lineterm=""))


@dataclass
class Result:
    task_definition_arn: str
    revision: int
    image: str


def deploy(rendered: Rendered, wait_seconds: float = 600) -> Result:
    """Register, create or update the service, wait until stable, apply the scaling."""
    found = problems(rendered)
    if found:
        raise DeployError("verify failed:\n" + "\n".join(f"  {p}" for p in found))
    registered = _ecs().register_task_definition(**rendered.task_definition)["taskDefinition"]
    arn = registered["taskDefinitionArn"]
    _update_or_create(rendered, arn)
    _wait_stable(rendered, arn, wait_seconds)
    _apply_scaling(rendered)
    app = next(c for c in registered["containerDefinitions"] if c["name"] == rendered.service)
    return Result(arn, registered["revision"], app["image"])


def _update_or_create(rendered: Rendered, arn: str) -> None:
    sd = rendered.service_definition
    if _current_task_definition(rendered) is None:
        _ecs().create_service(
            cluster=rendered.cluster, serviceName=rendered.service_name, taskDefinition=arn, **sd
        )
        return
    updatable = {
        k: sd[k]
        for k in (
            "desiredCount",
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
        if k in sd
    }
    _ecs().update_service(
        cluster=rendered.cluster, service=rendered.service_name, taskDefinition=arn, **updatable
    )


def _wait_stable(rendered: Rendered, arn: str, wait_seconds: float) -> None:
    """Wait until ``arn`` is the only deployment and it completed; 0 seconds: do not wait."""
    if wait_seconds <= 0:
        return
    deadline = time.monotonic() + wait_seconds
    while True:
        service = _ecs().describe_services(
            cluster=rendered.cluster, services=[rendered.service_name]
        )["services"][0]
        primary = [d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"]
        if primary and primary[0].get("rolloutState") == "FAILED":
            msg = f"deployment of {arn} failed: {primary[0].get('rolloutStateReason', '')}"
            raise DeployError(msg)
        settled = len(service.get("deployments", [])) == 1
        if (
            service["taskDefinition"] == arn
            and settled
            and (not primary or primary[0].get("rolloutState", "COMPLETED") == "COMPLETED")
        ):
            return
        if time.monotonic() > deadline:
            msg = f"{rendered.service_name} not stable on {arn} after {wait_seconds:g} s"
            raise DeployError(msg)
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))


def _apply_scaling(rendered: Rendered) -> None:
    scaling = boto3.client("application-autoscaling")
    resource = f"service/{rendered.cluster}/{rendered.service_name}"
    target = rendered.scaling["scalableTarget"]
    common = {
        "ServiceNamespace": "ecs",
        "ResourceId": resource,
        "ScalableDimension": "ecs:service:DesiredCount",
    }
    scaling.register_scalable_target(
        **common, MinCapacity=int(target["MinCapacity"]), MaxCapacity=int(target["MaxCapacity"])
    )
    for policy in rendered.scaling["policies"]:
        config = dict(policy["TargetTrackingScalingPolicyConfiguration"])
        config["TargetValue"] = float(config["TargetValue"])
        scaling.put_scaling_policy(
            **common,
            PolicyName=policy["PolicyName"],
            PolicyType=policy["PolicyType"],
            TargetTrackingScalingPolicyConfiguration=config,
        )
    if str(rendered.scaling.get("scheduledActionsEnabled", "false")).lower() == "true":
        for action in rendered.scaling["scheduledActions"]:
            capacity = {k: int(v) for k, v in action["ScalableTargetAction"].items()}
            scaling.put_scheduled_action(
                **{k: v for k, v in common.items()},
                ScheduledActionName=action["ScheduledActionName"],
                Schedule=action["Schedule"],
                Timezone=action.get("Timezone", "UTC"),
                ScalableTargetAction=capacity,
            )


def rollback(rendered: Rendered, wait_seconds: float = 600) -> Result:
    """Point the service back at the revision before the one it runs now."""
    current = _current_task_definition(rendered)
    if current is None:
        msg = f"{rendered.service_name} does not exist"
        raise DeployError(msg)
    arns = _ecs().list_task_definitions(
        familyPrefix=current["family"], sort="DESC", status="ACTIVE"
    )["taskDefinitionArns"]
    older = sorted(
        (a for a in arns if int(a.rsplit(":", 1)[1]) < current["revision"]),
        key=lambda arn: int(arn.rsplit(":", 1)[1]),
        reverse=True,
    )
    if not older:
        msg = f"{current['taskDefinitionArn']} has no earlier revision"
        raise DeployError(msg)
    previous = older[0]
    _ecs().update_service(
        cluster=rendered.cluster, service=rendered.service_name, taskDefinition=previous
    )
    _wait_stable(rendered, previous, wait_seconds)
    td = _ecs().describe_task_definition(taskDefinition=previous)["taskDefinition"]
    app = next(c for c in td["containerDefinitions"] if c["name"] == rendered.service)
    return Result(previous, td["revision"], app["image"])
