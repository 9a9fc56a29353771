"""Application Auto Scaling for a service, reconciled with ``scaling.json``.

``scaling.json`` is the whole truth for the service's scalable target: what it
holds is put (when the account differs), and a policy or scheduled action it no
longer holds (or that a switch turned off) is removed. :func:`plan` lists the changes without making
them; :func:`apply` makes them. The target's current minimum and maximum are
kept (a scheduled action or an operator may have set them) unless the caller
asks to apply the file's values; a new target starts with the file's values.
One exception: when the schedule goes (its scheduled actions are deleted),
nothing would ever move the target again (the evening stop may have left it at
0/0), so it returns to the file's values and the plan says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sbcntrctl.deploy.aws import Client

NAMESPACE = "ecs"
DIMENSION = "ecs:service:DesiredCount"


@dataclass
class Plan:
    """What :func:`apply` will do to one scalable target."""

    resource_id: str
    register: tuple[int, int] | None  # (min, max) to register; None keeps the current ones
    current: tuple[int, int] | None  # the target's (min, max) now; None when there is none
    wanted: tuple[int, int]  # scaling.json's (min, max)
    policies: list[dict[str, Any]] = field(default_factory=list)
    scheduled_actions: list[dict[str, Any]] = field(default_factory=list)
    delete_policies: list[str] = field(default_factory=list)
    delete_scheduled_actions: list[str] = field(default_factory=list)
    # why (min, max) goes back to the file's without --apply-capacity: the schedule went
    restored: str = ""

    def lines(self) -> list[str]:
        """The plan, one change a line, as ``diff`` and ``deploy`` print it."""
        out = []
        if self.register is not None:
            low, high = self.register
            why = f" ({self.restored})" if self.restored else ""
            out.append(f"register scalable target {self.resource_id}: min {low}, max {high}{why}")
        elif self.current is not None and self.current != self.wanted:
            low, high = self.current
            out.append(
                f"keep scalable target {self.resource_id}: min {low}, max {high} "
                f"(current values; --apply-capacity sets scaling.json's {self.wanted})"
            )
        out += [f"put scaling policy {p['PolicyName']}" for p in self.policies]
        out += [f"put scheduled action {a['ScheduledActionName']}" for a in self.scheduled_actions]
        out += [f"delete scaling policy {n} (not in scaling.json)" for n in self.delete_policies]
        out += [
            f"delete scheduled action {n} (not in scaling.json, or scheduled actions are off)"
            for n in self.delete_scheduled_actions
        ]
        return out


def resource_id(cluster: str, service_name: str) -> str:
    return f"service/{cluster}/{service_name}"


def plan(
    config: dict[str, Any], cluster: str, service_name: str, *, apply_capacity: bool = False
) -> Plan:
    """Compare ``config`` (rendered scaling.json) with the account; change nothing."""
    client = Client("application-autoscaling")
    resource = resource_id(cluster, service_name)
    where = {"ServiceNamespace": NAMESPACE, "ResourceId": resource, "ScalableDimension": DIMENSION}
    targets = client.describe_scalable_targets(
        ServiceNamespace=NAMESPACE, ResourceIds=[resource], ScalableDimension=DIMENSION
    )["ScalableTargets"]
    current = (targets[0]["MinCapacity"], targets[0]["MaxCapacity"]) if targets else None
    wanted = (config["scalableTarget"]["MinCapacity"], config["scalableTarget"]["MaxCapacity"])
    register = wanted if current is None or (apply_capacity and wanted != current) else None
    policies = list(config.get("policies", []))
    actions = (
        list(config.get("scheduledActions", [])) if config.get("scheduledActionsEnabled") else []
    )
    existing_policies = client.describe_scaling_policies(**where)["ScalingPolicies"]
    existing_actions = client.describe_scheduled_actions(**where)["ScheduledActions"]
    keep_policies = {p["PolicyName"] for p in policies}
    keep_actions = {a["ScheduledActionName"] for a in actions}
    by_policy = {p["PolicyName"]: p for p in existing_policies}
    by_action = {a["ScheduledActionName"]: a for a in existing_actions}
    delete_actions = sorted(
        a["ScheduledActionName"]
        for a in existing_actions
        if a["ScheduledActionName"] not in keep_actions
    )
    restored = ""
    if register is None and current is not None and current != wanted and delete_actions:
        # Without its schedule nothing would move the target again (a stop action may
        # have left it at 0/0, and the start action is being removed too).
        register = wanted
        restored = (
            f"back from {current[0]}/{current[1]} to scaling.json's: the schedule that "
            "set it is removed"
        )
    return Plan(
        resource,
        register,
        current,
        wanted,
        [p for p in policies if not _holds(by_policy.get(p["PolicyName"]), p)],
        [a for a in actions if not _holds(by_action.get(a["ScheduledActionName"]), a)],
        sorted(p["PolicyName"] for p in existing_policies if p["PolicyName"] not in keep_policies),
        delete_actions,
        restored,
    )


def _holds(existing: Any, wanted: Any) -> bool:
    """Whether ``existing`` (as AWS describes it) has every value of ``wanted``."""
    if isinstance(wanted, dict):
        return isinstance(existing, dict) and all(
            _holds(existing.get(k), v) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(existing, list)
            and len(existing) == len(wanted)
            and all(_holds(e, w) for e, w in zip(existing, wanted, strict=True))
        )
    if isinstance(wanted, bool) or isinstance(existing, bool):
        return existing is wanted
    if isinstance(wanted, int | float) and isinstance(existing, int | float):
        return float(existing) == float(wanted)
    return bool(existing == wanted)


def apply(change: Plan) -> None:
    """Make the changes of ``change``: register, put, then remove what the file dropped."""
    client = Client("application-autoscaling")
    where = {
        "ServiceNamespace": NAMESPACE,
        "ResourceId": change.resource_id,
        "ScalableDimension": DIMENSION,
    }
    if change.register is not None:
        low, high = change.register
        client.register_scalable_target(**where, MinCapacity=low, MaxCapacity=high)
    for policy in change.policies:
        client.put_scaling_policy(**where, **policy)
    for action in change.scheduled_actions:
        client.put_scheduled_action(**where, **action)
    for name in change.delete_policies:
        client.delete_scaling_policy(**where, PolicyName=name)
    for name in change.delete_scheduled_actions:
        client.delete_scheduled_action(**where, ScheduledActionName=name)
