"""Pushing an image to ECR once, and the digest its commit tag resolved to.

ECR repositories are IMMUTABLE: pushing a tag that exists fails
(``ImageTagAlreadyExistsException``). A re-run of the release for the same
commit therefore skips the push and deploys the digest already there.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from sbcntrctl import awsenv
from sbcntrctl.release.images import Image, ReleaseError, commit_sha, digest, read_json


def pushed_digest(image: Image, commit: str, ecr: Any = None) -> str | None:
    """The digest of ``<repository>:<commit>`` in ECR, or None when the tag is not there."""
    ecr = ecr or awsenv.client("ecr")
    try:
        described = ecr.describe_images(
            repositoryName=image.repository, imageIds=[{"imageTag": commit_sha(commit)}]
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "ImageNotFoundException":
            return None
        msg = f"ecr:DescribeImages on {image.repository}: {code}: {exc}"
        raise ReleaseError(msg) from exc
    details = described.get("imageDetails") or []
    return digest(details[0]["imageDigest"]) if details else None


def push(image: Image, commit: str, registry: str, ecr: Any = None) -> tuple[str, bool]:
    """Push ``<registry>/<repository>:<commit>`` unless the tag exists; (digest, pushed)."""
    ecr = ecr or awsenv.client("ecr")
    existing = pushed_digest(image, commit, ecr)
    if existing is not None:
        return existing, False
    ref = image.ref(commit, registry)
    done = subprocess.run(["docker", "push", ref], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        msg = f"docker push {ref} exited {done.returncode}: {done.stderr.strip()[-500:]}"
        raise ReleaseError(msg)
    pushed = pushed_digest(image, commit, ecr)
    if pushed is None:
        msg = f"{ref} was pushed but ECR does not list the tag {commit}"
        raise ReleaseError(msg)
    return pushed, True


def write_record(path: Path, image: Image, commit: str, image_digest: str) -> None:
    """The record a deploy reads: which repository, which commit, which digest."""
    record = {
        "image": image.name,
        "repository": image.repository,
        "commit": commit_sha(commit),
        "digest": digest(image_digest),
    }
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def read_records(paths: list[Path], commit: str) -> dict[str, str]:
    """repository -> digest from the records of one commit; ReleaseError on a mix-up."""
    digests: dict[str, str] = {}
    for path in paths:
        record = read_json(path, "a digest record (release push --out)")
        if not isinstance(record, dict) or not {"repository", "digest"} <= set(record):
            msg = f"{path}: not a digest record (release push --out): no repository and digest"
            raise ReleaseError(msg)
        if record.get("commit") != commit_sha(commit):
            msg = f"{path} records commit {record.get('commit')!r}, not {commit}"
            raise ReleaseError(msg)
        if record["repository"] in digests:
            msg = f"{path}: a second record for {record['repository']}"
            raise ReleaseError(msg)
        digests[record["repository"]] = digest(record["digest"])
    return digests
