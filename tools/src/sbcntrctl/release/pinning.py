"""Task definitions that pin what the pipeline built: ``repository@sha256:...``.

A tag can be read back to its commit only while nobody re-tags; a digest names
the bytes. The release renders the task definition with ``IMAGE_TAG`` = the
commit SHA, then replaces each of this project's images by its digest and
labels the container with the commit (``org.opencontainers.image.revision``), so
``aws ecs describe-task-definition`` shows both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sbcntrctl.release.images import IMAGES, ReleaseError, commit_sha, digest

REVISION_LABEL = "org.opencontainers.image.revision"
_OURS = {image.repository for image in IMAGES.values()}


def pin_images(task_definition: dict[str, Any], digests: Mapping[str, str], commit: str) -> None:
    """Pin every container image of this project in ``task_definition`` (in place).

    ``digests`` maps repository name to digest. Images of other repositories
    (the X-Ray daemon) are left as they are. ReleaseError when one of ours is
    tagged with another commit or has no digest.
    """
    commit_sha(commit)
    for container in task_definition["containerDefinitions"]:
        registry, _, name = container["image"].rpartition("/")
        repository, _, tag = name.partition(":")
        if repository not in _OURS:
            continue
        if tag != commit:
            msg = f"container {container['name']}: image tag {tag!r} is not the commit {commit}"
            raise ReleaseError(msg)
        if repository not in digests:
            msg = f"container {container['name']}: no digest recorded for {repository}"
            raise ReleaseError(msg)
        container["image"] = f"{registry}/{repository}@{digest(digests[repository])}"
        labels = dict(container.get("dockerLabels") or {})
        labels[REVISION_LABEL] = commit
        container["dockerLabels"] = labels
