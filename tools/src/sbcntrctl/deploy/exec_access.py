"""ECS Exec on a task: only with the agent's paths writable, never with the FIS sidecar.

ECS Exec's managed agent writes to ``/managed-agents``, ``/var/lib/amazon/ssm``
and ``/var/log/amazon/ssm`` inside the container (aws/containers-roadmap#1359,
aws-containers/amazon-ecs-exec-checker#21): a container with a read-only root
needs those three paths mounted writable from task volumes, and exec must not be
bought by making the root writable. The app services keep exec off (the
bastion of infra/operations.yml is the way in, docs/operations.md); these rules
judge any task definition exec is turned on for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sbcntrctl.deploy.verify import Problem

AGENT_PATHS = ("/managed-agents", "/var/lib/amazon/ssm", "/var/log/amazon/ssm")


def problems(td: Mapping[str, Any], exec_enabled: bool) -> list[Problem]:
    """A task definition in the ECS API's shape; empty when exec is off."""
    if not exec_enabled:
        return []
    found = []
    volumes = {v["name"] for v in td.get("volumes", [])}
    for container in td.get("containerDefinitions", []):
        where = f"containerDefinitions[{container['name']}]"
        if not container.get("readonlyRootFilesystem"):
            found.append(Problem(where, "ECS Exec on a writable root"))
            continue
        writable = {
            m["containerPath"]
            for m in container.get("mountPoints", [])
            if not m.get("readOnly") and m.get("sourceVolume") in volumes
        }
        found += [
            Problem(where, f"ECS Exec without {path} writable")
            for path in AGENT_PATHS
            if path not in writable
        ]
    return found
