"""Deploying a release's digests to one environment, and rolling a service back.

The deployment variables of an environment (cluster, subnets, roles, URLs...)
come from the process environment, as for ``sbcntrctl deploy``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from sbcntrctl.deploy import ecs, migrate
from sbcntrctl.release.images import ReleaseError, commit_sha
from sbcntrctl.release.pinning import pin_images

SERVICES = ("backend", "frontend")  # the backend first: the frontend calls it


def deployment_env(environment: str) -> dict[str, str]:
    """The variables the task definition templates read, for ``environment``."""
    env = dict(os.environ)
    env["ENV_NAME"] = environment
    return env


def deploy(
    environment: str, commit: str, digests: Mapping[str, str], wait_seconds: float
) -> Iterator[str]:
    """Deploy each service with its images pinned by digest; one line per service."""
    env = deployment_env(environment)
    env["IMAGE_TAG"] = commit_sha(commit)
    for service in SERVICES:
        rendered = ecs.render(service, env)
        pin_images(rendered.task_definition, digests, commit)
        try:
            # The backend's migration task runs first, on the revision being deployed.
            migration = migrate.before_update(rendered, wait_seconds)
            result = ecs.deploy(rendered, wait_seconds, before_update=migration)
        except ecs.DeployError as exc:
            msg = f"deploy of {service} to {environment} failed: {exc}"
            raise ReleaseError(msg) from exc
        yield f"{environment} {rendered.service_name}: revision {result.revision}, {result.image}"


def frontend_url(environment: str) -> str:
    """The public URL of ``environment``'s frontend (``FRONTEND_URL``)."""
    url = deployment_env(environment).get("FRONTEND_URL", "")
    if not url:
        msg = f"no FRONTEND_URL for {environment}: pass the URL instead"
        raise ReleaseError(msg)
    return url


def rollback(environment: str, service: str) -> str:
    """Point ``service`` back at its last revision that reached steady state.

    Needs only ``ECS_CLUSTER`` (and credentials): no template is rendered.
    """
    cluster = deployment_env(environment).get("ECS_CLUSTER", "")
    if not cluster:
        msg = f"no ECS_CLUSTER for {environment}: set the environment's cluster"
        raise ReleaseError(msg)
    try:
        result = ecs.rollback(cluster, service)
    except ecs.DeployError as exc:
        msg = f"rollback of {service} in {environment} failed: {exc}"
        raise ReleaseError(msg) from exc
    return f"{environment} {ecs.service_name(service)}: back on revision {result.revision}"
