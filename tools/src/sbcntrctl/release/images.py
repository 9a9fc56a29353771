"""The images a release builds, and how each is named.

This is the one list of the project's images: the workflows' build matrices,
the scan acceptances, the digest pinning and the ECR repositories of
``infra/registry.yml`` are checked against it (tests/workflows, tests/infra).

Every image is built for ``PLATFORM``, the platform the task definitions run
on (``runtimePlatform``: ARM64, Linux); ``sbcntrctl deploy verify`` refuses an
image whose manifest does not list the task's platform.

The load generator (``loadtest``) is built, scanned and pushed like the
others but is not ``deployed``: no service's task definition runs it, so
``release deploy`` neither needs nor reads its digest record; ``sbcntrctl
loadtest ecs run --image-tag <commit>`` runs the tag the release pushed.

A release tags every image with the full commit SHA and nothing else: ECR
repositories are IMMUTABLE, so a tag names one image for good, and the running
task definition pins the digest that tag resolved to.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ReleaseError(Exception):
    """A release step cannot go on; the message says which input is wrong and why."""


@dataclass(frozen=True)
class Image:
    """One image of the release: built from ``dockerfile`` in ``context``, pushed to
    ``repository``; ``deployed`` when a service's task definition runs it (the
    release deploys its digest to stg and prod)."""

    name: str
    repository: str
    dockerfile: str
    context: str
    deployed: bool = True

    @property
    def cache_scope(self) -> str:
        """The BuildKit cache scope of the image's builds for ``PLATFORM`` (the CI
        builds on main write it, the release reads and writes it)."""
        return f"{self.name}-{PLATFORM.replace('/', '-')}"

    def ref(self, commit: str, registry: str = "") -> str:
        """``<registry>/<repository>:<commit>`` (no registry: the local name)."""
        prefix = f"{registry.rstrip('/')}/" if registry else ""
        return f"{prefix}{self.repository}:{commit_sha(commit)}"


IMAGES: dict[str, Image] = {
    image.name: image
    for image in (
        Image("backend", "sbcntr-backend", "Dockerfile.backend", "."),
        Image("frontend", "sbcntr-frontend", "Dockerfile.frontend", "."),
        Image("log-router", "sbcntr-log-router", "firelens/Dockerfile", "firelens"),
        Image(
            "otel-collector",
            "sbcntr-otel-collector",
            "otel-collector/Dockerfile",
            "otel-collector",
        ),
        Image("loadtest", "sbcntr-loadtest", "loadtest/Dockerfile", ".", deployed=False),
    )
}

# The images ``release deploy`` pins into the services' task definitions, in the
# order of IMAGES: the deploy steps pass one digest record for each.
DEPLOYED: tuple[str, ...] = tuple(name for name, image in IMAGES.items() if image.deployed)

# The task definitions' runtimePlatform (taskdefs/*/task-def.json: cpuArchitecture
# ARM64, operatingSystemFamily LINUX) as a build platform.
PLATFORM = "linux/arm64"

_SHA = re.compile(r"[0-9a-f]{40}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def commit_sha(value: str) -> str:
    """``value`` if it is a full, lower-case git commit SHA; otherwise ReleaseError."""
    if not _SHA.fullmatch(value):
        msg = f"image tags are full commit SHAs (40 hex digits), not {value!r}"
        raise ReleaseError(msg)
    return value


def digest(value: str) -> str:
    """``value`` if it is an image digest ``sha256:<64 hex>``; otherwise ReleaseError."""
    if not _DIGEST.fullmatch(value):
        msg = f"not an image digest (sha256:<64 hex digits>): {value!r}"
        raise ReleaseError(msg)
    return value


def image(name: str) -> Image:
    try:
        return IMAGES[name]
    except KeyError:
        msg = f"unknown image {name!r}; one of {', '.join(IMAGES)}"
        raise ReleaseError(msg) from None


def read_json(path: Path, what: str) -> Any:
    """The JSON document in ``path`` (``what`` it should be); ReleaseError in one line."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"{path}: cannot read {what}: {exc.strerror}"
        raise ReleaseError(msg) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{path}: not {what} (not JSON: {exc})"
        raise ReleaseError(msg) from None
