"""The IAM policies of a service's roles, rendered from ``taskdefs/iam/``.

One execution role and one task role per service and environment:
``sbcntr-<env>-<service>-execution`` (the ECS agent: pull the images, read the
service's own secrets, write the sidecars' logs) and ``sbcntr-<env>-<service>-task``
(what the containers call); the backend has a third, ``sbcntr-<env>-backend-migrate``,
its one-off migration task's role and the only one that may read the database
owner's secret. The backend task role's ``rds-db:connect`` is attached by the
data stack (``taskdefs/iam/database-policy-backend.json``): it names the
database's resource id.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sbcntrctl.deploy import template

KINDS = ("execution", "task", "migrate")


def _kinds(service: str, directory: Path) -> list[str]:
    """The roles ``service`` has: execution and task, and migrate where it has a database."""
    return [
        kind
        for kind in KINDS
        if kind != "migrate" or (directory / "iam" / f"migrate-role-policy-{service}.json").exists()
    ]


def role_names(
    service: str, env: Mapping[str, str], directory: Path | None = None
) -> dict[str, str]:
    """``{"execution": name, "task": name}`` for ``service`` in ENV_NAME (default dev).

    With the taskdefs ``directory``, also ``"migrate"`` for a service that has
    a migration role (the backend).
    """
    stage = template.go_env(env, ["ENV_NAME", "dev"])
    kinds = _kinds(service, directory) if directory is not None else ["execution", "task"]
    return {kind: f"sbcntr-{stage}-{service}-{kind}" for kind in kinds}


def render(service: str, env: Mapping[str, str], directory: Path) -> dict[str, Any]:
    """Role name -> rendered policy document, for every role of ``service``."""
    names = role_names(service, env, directory)
    return {
        name: template.render_json(directory / "iam" / f"{kind}-role-policy-{service}.json", env)
        for kind, name in names.items()
    }
