"""The IAM policies of a service's roles, rendered from ``taskdefs/iam/``.

One execution role and one task role per service and environment:
``sbcntr-<env>-<service>-execution`` (the ECS agent: pull the images, read the
service's own secrets, write the sidecars' logs) and ``sbcntr-<env>-<service>-task``
(what the containers call). Only the backend's execution role may read the
database secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sbcntrctl.deploy import template


def role_names(service: str, env: Mapping[str, str]) -> dict[str, str]:
    """``{"execution": name, "task": name}`` for ``service`` in ENV_NAME (default dev)."""
    stage = template.go_env(env, ["ENV_NAME", "dev"])
    return {kind: f"sbcntr-{stage}-{service}-{kind}" for kind in ("execution", "task")}


def render(service: str, env: Mapping[str, str], directory: Path) -> dict[str, Any]:
    """Role name -> rendered policy document, for both roles of ``service``."""
    names = role_names(service, env)
    return {
        names[kind]: template.render_json(
            directory / "iam" / f"{kind}-role-policy-{service}.json", env
        )
        for kind in ("execution", "task")
    }
