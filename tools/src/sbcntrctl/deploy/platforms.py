"""Which platforms an ECR image runs on, read from its manifest, and whether one
of them is the platform a task definition asks for.

A task definition's ``runtimePlatform`` (``cpuArchitecture`` ``X86_64`` or
``ARM64``, ``operatingSystemFamily`` ``LINUX`` by default) decides the CPU the
Fargate task gets; ECS registers the definition whatever its images are built
for, and the task then fails to start (``CannotPullContainerError``: no
matching manifest for the platform) or its process dies with ``exec format
error``. So ``sbcntrctl deploy verify`` reads each image's manifest first:

- an image index (OCI image index, Docker manifest list) lists its images'
  platforms (``manifests[].platform``); attestation entries
  (``unknown/unknown``) run nowhere and are skipped;
- a single image manifest names its config blob, whose ``architecture`` and
  ``os`` are the image's platform (OCI image spec, "Image Configuration").
  ECR hands blobs out through ``GetDownloadUrlForLayer`` (a pre-signed URL,
  Amazon ECR API reference), so the config is fetched from there;
- a schema 1 manifest carries ``architecture`` itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from sbcntrctl.deploy.aws import Client, DeployError

INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
)
SCHEMA1_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
# BatchGetImage returns the manifest as pushed when its type is accepted.
ACCEPTED_MEDIA_TYPES = sorted(INDEX_TYPES | MANIFEST_TYPES | SCHEMA1_TYPES)
# runtimePlatform -> the OCI platform names (GOARCH/GOOS spelling).
ARCHITECTURES = {"X86_64": "amd64", "ARM64": "arm64"}
CONFIG_LIMIT_BYTES = 4 * 1024 * 1024

Download = Callable[[str], bytes]


class PlatformError(DeployError):
    """An image's manifest cannot be read as an image (the message names it)."""


def task_platform(td: dict[str, Any]) -> str:
    """``os/arch`` the task runs on: ECS's defaults are LINUX and X86_64 (Amazon ECS
    developer guide, "Task definition parameters", runtimePlatform)."""
    platform = td.get("runtimePlatform") or {}
    family = str(platform.get("operatingSystemFamily", "LINUX"))
    arch = str(platform.get("cpuArchitecture", "X86_64"))
    system = "linux" if family == "LINUX" else "windows"
    return f"{system}/{ARCHITECTURES.get(arch, arch.lower())}"


def download(url: str) -> bytes:
    """The body at a pre-signed ECR layer URL (https only, at most 4 MiB)."""
    if not url.startswith("https://"):
        msg = f"ECR gave a download URL that is not https: {url[:80]}"
        raise PlatformError(msg)
    try:
        with httpx.stream("GET", url, timeout=30, follow_redirects=True) as response:
            response.raise_for_status()
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > CONFIG_LIMIT_BYTES:
                    msg = f"the image config at {url[:80]} exceeds {CONFIG_LIMIT_BYTES} bytes"
                    raise PlatformError(msg)
            return body
    except httpx.HTTPError as exc:
        msg = f"cannot download the image config from ECR: {exc}"
        raise PlatformError(msg) from exc


def _platform(entry: dict[str, Any]) -> str:
    name = f"{entry.get('os', '?')}/{entry.get('architecture', '?')}"
    return f"{name}/{entry['variant']}" if entry.get("variant") else name


def image_platforms(
    ecr: Client,
    registry_id: str,
    repository: str,
    image_id: dict[str, str],
    fetch: Download = download,
) -> list[str]:
    """The platforms (``os/arch[/variant]``) the image ``image_id`` runs on."""
    found = ecr.batch_get_image(
        registryId=registry_id,
        repositoryName=repository,
        imageIds=[image_id],
        acceptedMediaTypes=ACCEPTED_MEDIA_TYPES,
    )
    images = found.get("images") or []
    if not images:
        msg = f"ecr:BatchGetImage returned no manifest for {repository} {image_id}"
        raise PlatformError(msg)
    image = images[0]
    try:
        manifest = json.loads(image["imageManifest"])
    except (KeyError, ValueError) as exc:
        msg = f"{repository}: the manifest is not JSON"
        raise PlatformError(msg) from exc
    media_type = manifest.get("mediaType") or image.get("imageManifestMediaType", "")
    if media_type in INDEX_TYPES or "manifests" in manifest:
        platforms = [_platform(m.get("platform") or {}) for m in manifest.get("manifests", [])]
        return [p for p in platforms if not p.startswith("unknown/")]
    if media_type in SCHEMA1_TYPES or manifest.get("schemaVersion") == 1:
        return [_platform({"os": "linux", "architecture": manifest.get("architecture")})]
    config_digest = (manifest.get("config") or {}).get("digest")
    if not config_digest:
        msg = f"{repository}: a {media_type or 'manifest'} without a config digest"
        raise PlatformError(msg)
    url = ecr.get_download_url_for_layer(
        registryId=registry_id, repositoryName=repository, layerDigest=config_digest
    )["downloadUrl"]
    try:
        config = json.loads(fetch(url))
    except ValueError as exc:
        msg = f"{repository}: the image config {config_digest} is not JSON"
        raise PlatformError(msg) from exc
    return [_platform(config)]


def runs_on(platforms: list[str], wanted: str) -> bool:
    """Whether one of ``platforms`` is ``wanted`` (a variant, e.g. arm64/v8, still matches)."""
    return any(p == wanted or p.startswith(wanted + "/") for p in platforms)
