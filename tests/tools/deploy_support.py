"""What the deploy tests share: the variables of a deploy, a moto server and
the account a deploy expects (network, roles, secret, log groups, bucket,
cluster with its capacity providers, images in ECR)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.stub import Stubber

from sbcntrctl import awsenv
from sbcntrctl.release.images import IMAGES
from tests.support import ROOT, free_port

TASKDEFS = ROOT / "taskdefs"
TARGET_GROUPS = "arn:aws:elasticloadbalancing:ap-northeast-1:123456789012:targetgroup"
ENV = {
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_REGION": "ap-northeast-1",
    "ECS_CLUSTER": "sbcntr-dev",
    "IMAGE_TAG": "0a1b2c3",
    "LOG_BUCKET": "sbcntr-logs-123456789012",
    "DATABASE_URL": "postgresql://sbcntr_app@sbcntr-db.cluster-x.ap-northeast-1.rds.amazonaws.com:5432/sbcntr",
    "DB_SECRET_ARN": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:sbcntr-db-AbCdEf",
    "SECRETS_KMS_KEY_ARN": "arn:aws:kms:ap-northeast-1:123456789012:key/1234abcd-12ab-34cd",
    "BACKEND_URL": "http://internal-sbcntr-backend-123.ap-northeast-1.elb.amazonaws.com",
    "PRIVATE_SUBNET_1": "subnet-0aaa",
    "PRIVATE_SUBNET_2": "subnet-0bbb",
    "FRONTEND_SECURITY_GROUP": "sg-0front",
    "BACKEND_SECURITY_GROUP": "sg-0back",
    "FRONTEND_TARGET_GROUP_ARN": f"{TARGET_GROUPS}/front/1",
    "BACKEND_TARGET_GROUP_ARN": f"{TARGET_GROUPS}/back/2",
    "FRONTEND_ALB_FULL_NAME": "app/sbcntr-public/1",
    "BACKEND_ALB_FULL_NAME": "app/sbcntr-internal/2",
    "FRONTEND_TARGET_GROUP_FULL_NAME": "targetgroup/front/1",
    "BACKEND_TARGET_GROUP_FULL_NAME": "targetgroup/back/2",
}
LISTENER_RULES = "arn:aws:elasticloadbalancing:ap-northeast-1:123456789012:listener-rule/app"
# What a blue/green or canary deployment needs besides (edge and deploy-hook stacks).
BLUE_GREEN_ENV = {
    **ENV,
    "DEPLOYMENT_STRATEGY": "BLUE_GREEN",
    "FRONTEND_ALTERNATE_TARGET_GROUP_ARN": f"{TARGET_GROUPS}/front-alt/3",
    "BACKEND_ALTERNATE_TARGET_GROUP_ARN": f"{TARGET_GROUPS}/back-alt/4",
    "FRONTEND_ALTERNATE_TARGET_GROUP_FULL_NAME": "targetgroup/front-alt/3",
    "BACKEND_ALTERNATE_TARGET_GROUP_FULL_NAME": "targetgroup/back-alt/4",
    "FRONTEND_PRODUCTION_RULE_ARN": f"{LISTENER_RULES}/sbcntr-public/1/a1/b1",
    "BACKEND_PRODUCTION_RULE_ARN": f"{LISTENER_RULES}/sbcntr-internal/2/a2/b2",
    "FRONTEND_TEST_RULE_ARN": f"{LISTENER_RULES}/sbcntr-public/1/a3/b3",
    "BACKEND_TEST_RULE_ARN": f"{LISTENER_RULES}/sbcntr-internal/2/a4/b4",
    "ECS_LB_INFRASTRUCTURE_ROLE_ARN": "arn:aws:iam::123456789012:role/sbcntr-dev-ecs-lb",
    "DEPLOY_HOOK_FUNCTION_ARN": (
        "arn:aws:lambda:ap-northeast-1:123456789012:function:sbcntr-dev-deploy-hook"
    ),
    "DEPLOY_HOOK_ROLE_ARN": "arn:aws:iam::123456789012:role/sbcntr-dev-deploy-hook-invoke",
}
SERVICES = ("frontend", "backend")
# Every repository the release pushes to (the collector too: TRACING_BACKEND=otel).
REPOSITORIES = tuple(image.repository for image in IMAGES.values())
XRAY_MIRROR = "ecr-public/xray/aws-xray-daemon"
XRAY_TAG = "3.3.15"


@contextmanager
def running_moto_server(log_dir: Path, **env: str) -> Iterator[str]:
    """A moto server on a free loopback port; ``env`` reaches the server process.

    ``MOTO_ECS_SERVICE_RUNNING`` is how many tasks moto says a new service
    runs: at least its desiredCount and every deployment reads COMPLETED
    (steady), below it every deployment stays IN_PROGRESS.
    """
    port = free_port()
    binary = Path(sys.executable).parent / "moto_server"
    log = (log_dir / f"moto-{port}.log").open("wb")
    process = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=log,
        env={**os.environ, **env},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/moto-api/", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    try:
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        log.close()


@pytest.fixture
def moto_server(tmp_path: Path) -> Iterator[str]:
    """The URL of a moto server of this test alone."""
    with running_moto_server(tmp_path) as url:
        yield url


def aws_env(url: str) -> dict[str, str]:
    """The environment that points boto3 at the moto server ``url``."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "ap-northeast-1",
        "AWS_REGION": "ap-northeast-1",
    }


# The task definitions' default runtimePlatform (cpuArchitecture ARM64, LINUX).
TASK_PLATFORM = "linux/arm64"
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def image_manifest(platform: str, seed: str) -> tuple[str, bytes]:
    """An OCI image manifest and the config blob it names (``os``/``architecture`` of
    ``platform``, OCI image spec "Image Configuration"), as the bytes a push sends."""
    system, architecture, *variant = platform.split("/")
    config = {"architecture": architecture, "os": system, "rootfs": {"type": "layers"}}
    if variant:
        config["variant"] = variant[0]
    blob = json.dumps({**config, "config": {"Labels": {"seed": seed}}}).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": len(blob),
            "digest": "sha256:" + hashlib.sha256(blob).hexdigest(),
        },
        "layers": [],
    }
    return json.dumps(manifest), blob


def push_image(
    repository: str, tag: str, platforms: tuple[str, ...] = (TASK_PLATFORM,)
) -> dict[str, bytes]:
    """Create ``repository`` if needed and push an image index tagged ``tag`` whose
    images are built for ``platforms``: each platform's manifest first (ECR refuses
    an index naming a manifest it does not hold: ReferencedImagesNotFoundException),
    then the index. Returns the config blobs by digest."""
    ecr = boto3.client("ecr")
    with suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=repository)
    entries, blobs = [], {}
    for platform in platforms:
        manifest, blob = image_manifest(platform, f"{repository}:{tag}")
        blobs["sha256:" + hashlib.sha256(blob).hexdigest()] = blob
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        ecr.put_image(repositoryName=repository, imageManifest=manifest, imageDigest=digest)
        system, architecture, *variant = platform.split("/")
        described = {"os": system, "architecture": architecture}
        if variant:
            described["variant"] = variant[0]
        entries.append(
            {"mediaType": MANIFEST, "size": len(manifest), "digest": digest, "platform": described}
        )
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}
    ecr.put_image(repositoryName=repository, imageManifest=json.dumps(index), imageTag=tag)
    return blobs


def prerequisites(env: dict[str, str], *, capacity_providers: bool = True) -> dict[str, str]:
    """What exists before a deploy; returns ``env`` with the ids moto gave."""
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # Interface endpoints' private DNS needs DNS hostnames in the VPC.
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=f"ap-northeast-1{z}"
        )["Subnet"]["SubnetId"]
        for n, z in ((1, "a"), (2, "c"))
    ]
    groups = {
        name: ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
        for name in ("front", "back")
    }
    iam = boto3.client("iam")
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )
    for service in SERVICES:
        for kind in ("execution", "task"):
            iam.create_role(RoleName=f"sbcntr-dev-{service}-{kind}", AssumeRolePolicyDocument=trust)
    secret = boto3.client("secretsmanager").create_secret(
        Name="sbcntr-db", SecretString='{"password":"pw"}'
    )["ARN"]
    logs = boto3.client("logs")
    for group in ("frontend", "backend", "unparsed", "log-router", "xray-daemon", "otel-collector"):
        logs.create_log_group(logGroupName=f"/sbcntr/dev/{group}")
    boto3.client("s3").create_bucket(
        Bucket=env["LOG_BUCKET"], CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"}
    )
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName=env["ECS_CLUSTER"])
    if capacity_providers:
        ecs.put_cluster_capacity_providers(
            cluster=env["ECS_CLUSTER"],
            capacityProviders=["FARGATE", "FARGATE_SPOT"],
            defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
        )
    create_rollback_alarms("dev")
    for repository in REPOSITORIES:
        push_image(repository, env["IMAGE_TAG"])
    # The pull-through cache creates this repository on the first pull.
    push_image(XRAY_MIRROR, XRAY_TAG)
    return {
        **env,
        "PRIVATE_SUBNET_1": subnets[0],
        "PRIVATE_SUBNET_2": subnets[1],
        "FRONTEND_SECURITY_GROUP": groups["front"],
        "BACKEND_SECURITY_GROUP": groups["back"],
        "DB_SECRET_ARN": secret,
    }


# The alarms of infra/monitoring.yml the services' deployments roll back on.
ROLLBACK_ALARMS = ("public-5xx-rate", "frontend-p99-latency")


def create_rollback_alarms(environment: str) -> list[str]:
    """The rollback alarms of ``environment`` as monitoring.yml names them; their names."""
    cloudwatch = boto3.client("cloudwatch")
    names = [f"sbcntr-{environment}-{alarm}" for alarm in ROLLBACK_ALARMS]
    for name in names:
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace=f"sbcntr/{environment}",
            MetricName="Latency",
            Statistic="Average",
            Period=60,
            EvaluationPeriods=3,
            Threshold=1,
            ComparisonOperator="GreaterThanThreshold",
        )
    return names


# Service prefixes of IAM (Service Authorization Reference) that differ from the API's
# signing name: CloudWatch signs as "monitoring".
IAM_PREFIXES = {"monitoring": "cloudwatch"}


@contextmanager
def stubbed_client(monkeypatch: pytest.MonkeyPatch, service: str) -> Iterator[Stubber]:
    """Every client the deploy code makes is one ``service`` client whose calls go
    to a Stubber (no network, AWS's documented response shapes); every queued
    response must have been used."""
    client = boto3.client(
        service,
        region_name="ap-northeast-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    monkeypatch.setattr("sbcntrctl.awsenv.client", lambda *_a, **_k: client)
    with Stubber(client) as stubber:
        yield stubber
    stubber.assert_no_pending_responses()


@contextmanager
def recorded_calls() -> Iterator[list[str]]:
    """The AWS calls this process makes through the tools' session meanwhile, as
    IAM action names (``<service prefix>:<operation>``, e.g. ``ecs:CreateService``)."""
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        prefix = model.service_model.signing_name
        calls.append(f"{IAM_PREFIXES.get(prefix, prefix)}:{model.name}")

    events = awsenv.session().events
    events.register("before-call", record, unique_id="recorded-calls")
    try:
        yield calls
    finally:
        events.unregister("before-call", unique_id="recorded-calls")


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``sbcntrctl deploy ARGS`` with exactly ``env`` on top of a scrubbed environment."""
    scrubbed = {
        k: v
        for k, v in os.environ.items()
        if k not in ENV and not k.startswith("AWS_") and k != "ECS_CLUSTER"
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "sbcntrctl"), "deploy", *args],
        env={**scrubbed, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
