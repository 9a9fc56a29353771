"""Deploying a release's digests to one environment, and rolling a service back.

The deployment variables of an environment (cluster, subnets, roles, URLs...)
come from the outputs of its stacks (infra/, as ``sbcntrctl deploy
--from-stack``); a variable set in the process environment wins.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from sbcntrctl.deploy import ecs, migrate, template
from sbcntrctl.infra import cloudformation
from sbcntrctl.infra.stacks import BY_KEY, DEPLOYMENT_SETTINGS
from sbcntrctl.release.images import ReleaseError, commit_sha
from sbcntrctl.release.pinning import pin_images

SERVICES = ("backend", "frontend")  # the backend first: the frontend calls it
# How long each service's rolling deployment may take (the migration's run included).
WAIT_SECONDS = 900.0


def deployment_env(environment: str) -> dict[str, str]:
    """The variables the task definition templates read, for ``environment``."""
    try:
        stacks = cloudformation.task_variables(environment)
    except cloudformation.InfraError as exc:
        if "ECS_CLUSTER" not in os.environ:
            msg = f"the stacks of {environment} cannot give the deploy variables: {exc}"
            raise ReleaseError(msg) from exc
        stacks = {}  # infrastructure made elsewhere: the variables are in the environment
    # The environment's deployment strategy even without the stacks (docs/release.md).
    settings = DEPLOYMENT_SETTINGS.get(environment, {})
    return {**settings, **stacks, **os.environ, "ENV_NAME": environment}


def deploy(
    environment: str,
    commit: str,
    digests: Mapping[str, str],
    wait_seconds: float | None,
    directory: Path = ecs.DEFAULT_DIR,
    progress: Callable[[str], object] | None = None,
    *,
    apply_capacity: bool = False,
) -> Iterator[str]:
    """Deploy each service with its images pinned by digest; one line per service, then
    one per scaling change (``apply_capacity``: min/max from scaling.json).

    ``progress`` receives each lifecycle stage of the deployments as it happens;
    ``wait_seconds`` None: :data:`WAIT_SECONDS` plus what the service's strategy
    adds (bake times, lifecycle hook timeouts).
    """
    env = deployment_env(environment)
    env["IMAGE_TAG"] = commit_sha(commit)
    for service in SERVICES:
        try:
            rendered = ecs.render(service, env, directory)
        except template.TemplateError as exc:
            msg = f"deploy of {service} to {environment}: {exc}"
            raise ReleaseError(msg) from exc
        pin_images(rendered.task_definition, digests, commit)
        try:
            # The backend's migration task runs first, on the revision being deployed.
            configuration = rendered.service_definition.get("deploymentConfiguration", {})
            wait = ecs.budget(wait_seconds, configuration, WAIT_SECONDS)
            migration = migrate.before_update(rendered, wait)
            result = ecs.deploy(
                rendered,
                wait,
                before_update=migration,
                progress=progress,
                apply_capacity=apply_capacity,
            )
        except ecs.DeployError as exc:
            msg = f"deploy of {service} to {environment} failed: {exc}"
            raise ReleaseError(msg) from exc
        yield f"{environment} {rendered.service_name}: revision {result.revision}, {result.image}"
        yield from (f"  {note}" for note in result.notes)


def frontend_url(environment: str) -> str:
    """The public URL of ``environment``: ``FRONTEND_URL``, else the edge stack's ``PublicUrl``."""
    url = os.environ.get("FRONTEND_URL", "")
    if not url:
        try:
            url = cloudformation.outputs(BY_KEY["edge"].name(environment)).get("PublicUrl", "")
        except cloudformation.InfraError as exc:
            msg = f"no FRONTEND_URL for {environment} ({exc}): pass the URL instead"
            raise ReleaseError(msg) from exc
    if not url:
        msg = f"no FRONTEND_URL for {environment}: pass the URL instead"
        raise ReleaseError(msg)
    return url


def rollback(
    environment: str, service: str, progress: Callable[[str], object] | None = None
) -> str:
    """Point ``service`` back at its last revision that reached steady state.

    Needs only the cluster (``ECS_CLUSTER``, else ``sbcntr-<env>``, the platform
    stack's name for it) and credentials: no template is rendered, no stack read.
    """
    cluster = os.environ.get("ECS_CLUSTER") or f"sbcntr-{environment}"
    try:
        result = ecs.rollback(cluster, service, progress=progress)
    except ecs.DeployError as exc:
        msg = f"rollback of {service} in {environment} failed: {exc}"
        raise ReleaseError(msg) from exc
    return f"{environment} {ecs.service_name(service)}: back on revision {result.revision}"
