"""`sbcntrctl deploy verify` refuses an image that cannot run on the task's CPU.

ECS registers a task definition whatever its images are built for; an ARM64
Fargate task pinned to an amd64-only image then fails to start
(CannotPullContainerError: no matching manifest for linux/arm64) or its process
dies with ``exec format error`` (Amazon ECS developer guide, "Task definition
parameters", runtimePlatform; "Amazon ECS task definitions for 64-bit ARM
workloads"). moto ignores CPU architecture, so the manifests are put into moto's
ECR as a push writes them and verify reads them back with BatchGetImage.

A single image manifest keeps its platform in the config blob, which ECR hands
out through GetDownloadUrlForLayer (Amazon ECR API reference,
GetDownloadUrlForLayer: ``{"downloadUrl": ..., "layerDigest": ...}``, a
pre-signed S3 URL). moto does not implement that call, so the test answers it
with that documented shape through botocore's ``before-call`` event (what
botocore's Stubber does) and serves the blob that was uploaded to moto.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.awsrequest import AWSResponse

from sbcntrctl import awsenv
from sbcntrctl.deploy import platforms, preflight
from sbcntrctl.deploy.platforms import PlatformError
from tests.tools.deploy_support import (
    ENV,
    aws_env,
    image_manifest,
    prerequisites,
    push_image,
    run_cli,
    running_moto_server,
)

ACCOUNT, REGION = "123456789012", "ap-northeast-1"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
LAYER_BUCKET = f"https://prod-{REGION}-starport-layer-bucket.s3.{REGION}.amazonaws.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def account(server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh moto account that boto3 (and so sbcntrctl in this process) talks to."""
    httpx.post(f"{server}/moto-api/reset", timeout=10).raise_for_status()
    for name, value in aws_env(server).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    boto3.setup_default_session()
    return server


class Layers:
    """The config blobs pushed to moto, served as ECR serves them: GetDownloadUrlForLayer
    answers a pre-signed URL (documented response shape), the URL answers the blob."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.calls: list[dict[str, Any]] = []

    def upload(self, repository: str, blob: bytes) -> str:
        """The layer upload of a push (moto implements these calls); the blob's digest."""
        ecr = boto3.client("ecr")
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        upload = ecr.initiate_layer_upload(repositoryName=repository)["uploadId"]
        ecr.upload_layer_part(
            repositoryName=repository,
            uploadId=upload,
            partFirstByte=0,
            partLastByte=len(blob) - 1,
            layerPartBlob=blob,
        )
        ecr.complete_layer_upload(repositoryName=repository, uploadId=upload, layerDigests=[digest])
        self.blobs[digest] = blob
        return digest

    def answer(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        call = json.loads(params["body"])  # the request as ECR's JSON protocol sends it
        self.calls.append(call)
        digest = call["layerDigest"]
        url = f"{LAYER_BUCKET}/{hashlib.sha256(digest.encode()).hexdigest()}?X-Amz-Signature=x"
        return AWSResponse(url, 200, {}, None), {"downloadUrl": url, "layerDigest": digest}

    def fetch(self, url: str) -> bytes:
        digest = next(
            d for d in self.blobs if hashlib.sha256(d.encode()).hexdigest() in url.split("?")[0]
        )
        return self.blobs[digest]


@pytest.fixture
def layers(account: str) -> Layers:
    served = Layers()
    awsenv.session().events.register("before-call.ecr.GetDownloadUrlForLayer", served.answer)
    return served


def push_single(repository: str, tag: str, platform: str, layers: Layers) -> None:
    """A single image manifest, as ``docker push`` of one platform writes it."""
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName=repository)
    manifest, blob = image_manifest(platform, tag)
    layers.upload(repository, blob)
    ecr.put_image(repositoryName=repository, imageManifest=manifest, imageTag=tag)


def task(architecture: str, *images: str) -> dict[str, Any]:
    return {
        "runtimePlatform": {"cpuArchitecture": architecture, "operatingSystemFamily": "LINUX"},
        "containerDefinitions": [
            {"name": image.split(":")[0].split("@")[0], "image": f"{REGISTRY}/{image}"}
            for image in images
        ],
    }


def problems(td: dict[str, Any], layers: Layers) -> list[str]:
    return [str(p) for p in preflight.images(td, fetch=layers.fetch)]


def test_a_single_amd64_manifest_is_refused_for_an_arm64_task(layers: Layers) -> None:
    push_single("app", "amd64", "linux/amd64", layers)
    push_single("other", "arm64", "linux/arm64", layers)
    assert problems(task("ARM64", "app:amd64", "other:arm64"), layers) == [
        "containerDefinitions[app].image: app:amd64 is built for linux/amd64, not for "
        "linux/arm64 (runtimePlatform): build and push it for that platform"
    ]
    # The platform came from each image's config blob, fetched through ECR.
    assert [c["layerDigest"] for c in layers.calls] == list(layers.blobs)
    assert problems(task("X86_64", "app:amd64"), layers) == []


def test_an_arm64_manifest_runs_on_arm64_only(layers: Layers) -> None:
    push_single("app", "arm64", "linux/arm64/v8", layers)
    assert problems(task("ARM64", "app:arm64"), layers) == []
    assert problems(task("X86_64", "app:arm64"), layers) == [
        "containerDefinitions[app].image: app:arm64 is built for linux/arm64/v8, not for "
        "linux/amd64 (runtimePlatform): build and push it for that platform"
    ]


def test_a_two_platform_index_runs_on_either_and_needs_no_blob(layers: Layers) -> None:
    push_image("app", "both", ("linux/amd64", "linux/arm64"))
    push_image("old", "amd64", ("linux/amd64",))
    assert problems(task("ARM64", "app:both"), layers) == []
    assert problems(task("X86_64", "app:both"), layers) == []
    assert problems(task("ARM64", "old:amd64"), layers) == [
        "containerDefinitions[old].image: old:amd64 is built for linux/amd64, not for "
        "linux/arm64 (runtimePlatform): build and push it for that platform"
    ]
    assert layers.calls == []  # an index names its platforms


def test_an_index_pinned_by_digest_and_its_attestations(layers: Layers) -> None:
    """buildx adds attestation manifests to the index as ``unknown/unknown``: they run nowhere."""
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="app")
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
            {
                "digest": "sha256:" + "2" * 64,
                "platform": {"os": "unknown", "architecture": "unknown"},
                "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
            },
        ],
    }
    ecr.put_image(repositoryName="app", imageManifest=json.dumps(index), imageTag="t")
    digest = ecr.describe_images(repositoryName="app", imageIds=[{"imageTag": "t"}])[
        "imageDetails"
    ][0]["imageDigest"]
    assert problems(task("ARM64", f"app@{digest}"), layers) == [
        f"containerDefinitions[app].image: app@{digest} is built for linux/amd64, not for "
        "linux/arm64 (runtimePlatform): build and push it for that platform"
    ]


def test_the_task_platform_follows_ecs_defaults() -> None:
    assert platforms.task_platform({}) == "linux/amd64"
    assert platforms.task_platform({"runtimePlatform": {"cpuArchitecture": "ARM64"}}) == (
        "linux/arm64"
    )
    assert not platforms.runs_on(["linux/arm64"], "linux/arm")
    assert platforms.runs_on(["linux/arm64/v8"], "linux/arm64")


def test_a_download_url_that_is_not_https_is_refused() -> None:
    with pytest.raises(PlatformError, match="not https"):
        platforms.download("http://169.254.169.254/latest/meta-data/")


def test_verify_and_deploy_refuse_amd64_images_for_the_arm64_tasks(
    account: str, tmp_path: Path
) -> None:
    """The real CLI on the task definitions as shipped (ARM64): an amd64-only backend
    image stops verify and the deploy before anything is registered."""
    env = prerequisites(dict(ENV))
    cli = {**env, **aws_env(account)}
    assert run_cli("verify", "backend", env=cli).returncode == 0
    boto3.client("ecr").batch_delete_image(
        repositoryName="sbcntr-backend", imageIds=[{"imageTag": env["IMAGE_TAG"]}]
    )
    push_image("sbcntr-backend", env["IMAGE_TAG"], ("linux/amd64",))
    refused = run_cli("verify", "backend", env=cli)
    assert refused.returncode == 1
    assert (
        f"containerDefinitions[backend].image: sbcntr-backend:{env['IMAGE_TAG']} is built for "
        "linux/amd64, not for linux/arm64 (runtimePlatform)"
    ) in refused.stderr
    assert run_cli("deploy", "backend", env=cli).returncode == 1
    registered = boto3.client("ecs").list_task_definitions()["taskDefinitionArns"]
    assert registered == []
