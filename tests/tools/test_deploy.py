"""The deploy command: templates render and verify, each rule rejects a broken
definition naming its field, and the whole cycle runs against a moto server."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml

from sbcntrctl.deploy import ecs, template, verify
from tests.support import ROOT, free_port

TASKDEFS = ROOT / "taskdefs"
TARGET_GROUPS = "arn:aws:elasticloadbalancing:ap-northeast-1:123456789012:targetgroup"
ENV = {
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_REGION": "ap-northeast-1",
    "ECS_CLUSTER": "sbcntr-dev",
    "IMAGE_TAG": "0a1b2c3",
    "LOG_BUCKET": "sbcntr-logs-123456789012",
    "DATABASE_URL": "postgresql://app@sbcntr-db.cluster-x.ap-northeast-1.rds.amazonaws.com:5432/sbcntr",
    "DB_SECRET_ARN": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:sbcntr-db-AbCdEf",
    "BACKEND_URL": "http://internal-sbcntr-backend-123.ap-northeast-1.elb.amazonaws.com",
    "PRIVATE_SUBNET_1": "subnet-0aaa",
    "PRIVATE_SUBNET_2": "subnet-0bbb",
    "FRONTEND_SECURITY_GROUP": "sg-0front",
    "BACKEND_SECURITY_GROUP": "sg-0back",
    "FRONTEND_TARGET_GROUP_ARN": f"{TARGET_GROUPS}/front/1",
    "BACKEND_TARGET_GROUP_ARN": f"{TARGET_GROUPS}/back/2",
    "FRONTEND_ALB_RESOURCE_LABEL": "app/sbcntr-public/1/targetgroup/front/1",
    "BACKEND_ALB_RESOURCE_LABEL": "app/sbcntr-internal/2/targetgroup/back/2",
}
SERVICES = ("frontend", "backend")


@pytest.mark.parametrize("service", SERVICES)
def test_templates_render_and_verify(service: str) -> None:
    rendered = ecs.render(service, ENV, TASKDEFS)
    assert ecs.problems(rendered) == []
    app = rendered.task_definition["containerDefinitions"][0]
    assert app["image"].endswith(f"/sbcntr-{service}:0a1b2c3")
    assert rendered.task_definition["runtimePlatform"]["cpuArchitecture"] == "ARM64"


def test_render_names_every_missing_variable() -> None:
    env = {k: v for k, v in ENV.items() if k not in ("IMAGE_TAG", "DB_SECRET_ARN", "ECS_CLUSTER")}
    with pytest.raises(template.MissingVariables) as failure:
        ecs.render("backend", env, TASKDEFS)
    assert set(failure.value.names) == {"IMAGE_TAG", "DB_SECRET_ARN", "ECS_CLUSTER"}


def test_defaults_apply_and_can_be_overridden() -> None:
    td = ecs.render("frontend", {**ENV, "CPU_ARCHITECTURE": "X86_64"}, TASKDEFS).task_definition
    assert td["runtimePlatform"]["cpuArchitecture"] == "X86_64"
    assert (td["cpu"], td["memory"]) == ("512", "1024")


def app(td: dict[str, Any]) -> dict[str, Any]:
    return dict(td["containerDefinitions"][0])


def container(td: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in td["containerDefinitions"] if c["name"] == name)


Mutation = Callable[[dict[str, Any]], None]
BROKEN_TASK_DEFINITIONS: list[tuple[str, Mutation, str]] = [
    (
        "unknown key",
        lambda td: td["containerDefinitions"][0].update(readOnlyRootFilesystem=True),
        "readOnlyRootFilesystem",
    ),
    (
        "misspelt key",
        lambda td: td["containerDefinitions"][0].update(stopTimeOut=30),
        "stopTimeOut",
    ),
    (
        "wrong type",
        lambda td: td["containerDefinitions"][0]["portMappings"][0].update(containerPort="8081"),
        "containerPort",
    ),
    ("missing required", lambda td: td.pop("family"), "family"),
    (
        "container without a name",
        lambda td: td["containerDefinitions"][0].pop("name"),
        "name/image",
    ),
    (
        "dependsOn condition",
        lambda td: td["containerDefinitions"][0]["dependsOn"][0].update(condition="STARTED"),
        "dependsOn.condition",
    ),
    (
        "dependsOn unknown container",
        lambda td: td["containerDefinitions"][0]["dependsOn"][1].update(containerName="xray"),
        "dependsOn.containerName",
    ),
    (
        "HEALTHY without health check",
        lambda td: container(td, "log-router").pop("healthCheck"),
        "dependsOn",
    ),
    (
        "protocol",
        lambda td: td["containerDefinitions"][0]["portMappings"][0].update(protocol="sctp"),
        "portMappings.protocol",
    ),
    ("Fargate size", lambda td: td.update(cpu="256", memory="4096"), "cpu/memory"),
    ("network mode", lambda td: td.update(networkMode="bridge"), "networkMode"),
    (
        "stopTimeout above 120",
        lambda td: td["containerDefinitions"][0].update(stopTimeout=500),
        "stopTimeout",
    ),
    (
        "stopTimeout below drain + grace",
        lambda td: td["containerDefinitions"][0].update(stopTimeout=20),
        "stopTimeout",
    ),
    (
        "two routers",
        lambda td: td["containerDefinitions"].append(
            {**copy.deepcopy(container(td, "log-router")), "name": "log-router-2"}
        ),
        "firelensConfiguration",
    ),
    (
        "router config from S3",
        lambda td: container(td, "log-router")["firelensConfiguration"]["options"].update(
            {"config-file-type": "s3"}
        ),
        "firelensConfiguration.options",
    ),
    (
        "router not root",
        lambda td: container(td, "log-router").update(user="1000"),
        "log-router].user",
    ),
    (
        "router hard memory limit",
        lambda td: container(td, "log-router").update(memory=128),
        "log-router].memory",
    ),
    ("app as root", lambda td: td["containerDefinitions"][0].update(user="0"), "].user"),
    (
        "app root filesystem writable",
        lambda td: td["containerDefinitions"][0].update(readonlyRootFilesystem=False),
        "readonlyRootFilesystem",
    ),
    (
        "no /tmp volume",
        lambda td: td["containerDefinitions"][0].update(mountPoints=[]),
        "mountPoints",
    ),
    (
        "no init process",
        lambda td: td["containerDefinitions"][0].update(linuxParameters={}),
        "initProcessEnabled",
    ),
    (
        "secret in environment",
        lambda td: td["containerDefinitions"][0]["environment"].append(
            {"name": "DATABASE_PASSWORD", "value": "hunter2"}
        ),
        "environment.DATABASE_PASSWORD",
    ),
    (
        "credentials in a URL",
        lambda td: td["containerDefinitions"][0]["environment"].append(
            {"name": "DATABASE_URL", "value": "postgresql://app:pw@db/x"}
        ),
        "environment.DATABASE_URL",
    ),
    (
        "secret not from an ARN",
        lambda td: td["containerDefinitions"][0]["secrets"][0].update(valueFrom="hunter2"),
        "secrets.DATABASE_PASSWORD",
    ),
    (
        "latest tag",
        lambda td: td["containerDefinitions"][0].update(
            image="123.dkr.ecr.x.amazonaws.com/sbcntr-backend:latest"
        ),
        "].image",
    ),
    (
        "no tag",
        lambda td: container(td, "xray-daemon").update(image="public.ecr.aws/xray/aws-xray-daemon"),
        "xray-daemon].image",
    ),
    ("one role for both", lambda td: td.update(taskRoleArn=td["executionRoleArn"]), "taskRoleArn"),
    (
        "no log buffer limit",
        lambda td: td["containerDefinitions"][0]["logConfiguration"].update(options={}),
        "logConfiguration.options",
    ),
]


@pytest.mark.parametrize(
    ("case", "mutate", "field"),
    BROKEN_TASK_DEFINITIONS,
    ids=[c[0] for c in BROKEN_TASK_DEFINITIONS],
)
def test_verify_rejects_a_broken_task_definition(case: str, mutate: Mutation, field: str) -> None:
    td = copy.deepcopy(ecs.render("backend", ENV, TASKDEFS).task_definition)
    mutate(td)
    problems = verify.task_definition(td)
    assert problems, f"{case}: accepted"
    assert any(field in str(p) for p in problems), [str(p) for p in problems]


def test_verify_rejects_request_count_scaling_without_resource_label() -> None:
    scaling = copy.deepcopy(ecs.render("frontend", ENV, TASKDEFS).scaling)
    scaling["policies"][1]["TargetTrackingScalingPolicyConfiguration"][
        "PredefinedMetricSpecification"
    ].pop("ResourceLabel")
    assert any("ResourceLabel" in str(p) for p in verify.scaling(scaling))


def test_verify_rejects_a_public_or_unguarded_service() -> None:
    sd = copy.deepcopy(ecs.render("frontend", ENV, TASKDEFS).service_definition)
    sd["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] = "ENABLED"
    sd["deploymentConfiguration"]["deploymentCircuitBreaker"]["rollback"] = False
    fields = {p.field for p in verify.service_definition(sd)}
    assert {
        "networkConfiguration.assignPublicIp",
        "deploymentConfiguration.deploymentCircuitBreaker",
    } <= fields


# --- no drift between docker-compose.yml and the task definitions

# Addresses differ by design: compose uses service names, ECS uses localhost
# (awsvpc) and load balancers; the database is SQLite locally.
ADDRESSES = {"AWS_XRAY_DAEMON_ADDRESS", "BACKEND_URL", "DATABASE_URL", "ENVIRONMENT"}


@pytest.mark.parametrize("service", SERVICES)
def test_compose_and_task_definitions_agree(service: str) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    td = ecs.render(service, ENV, TASKDEFS).task_definition
    task_app = app(td)
    task_env = {v["name"]: v["value"] for v in task_app["environment"]}
    compose_env = {k: str(v) for k, v in compose[service]["environment"].items()}
    only_compose = set(compose_env) - set(task_env) - ADDRESSES
    assert not only_compose, f"set in compose only: {only_compose}"
    for name in set(compose_env) & set(task_env) - ADDRESSES:
        assert compose_env[name] == task_env[name], name
    assert int(compose_env["PORT"]) == task_app["portMappings"][0]["containerPort"]
    assert compose[service]["healthcheck"]["test"][1:] == task_app["healthCheck"]["command"][1:]
    assert compose[service]["stop_grace_period"] == f"{task_app['stopTimeout']}s"
    router = container(td, "log-router")
    assert compose["log-router"]["stop_grace_period"] == f"{router['stopTimeout']}s"
    router_env = {v["name"] for v in router["environment"]}
    compose_router = set(compose["log-router"]["environment"]) - {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        # The emulator's HTTPS port and certificate: image defaults overridden locally.
        "CLOUDWATCH_PORT",
        "OUTPUT_TLS_VERIFY",
    }
    assert compose_router == router_env


# --- the whole cycle against a moto server


@pytest.fixture
def moto_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    binary = Path(sys.executable).parent / "moto_server"
    log = (tmp_path / "moto.log").open("wb")
    process = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/moto-api/", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)
    log.close()


def prerequisites(env: dict[str, str]) -> dict[str, str]:
    """What exists before a deploy: network, roles, secret, log groups, bucket, cluster."""
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
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
    for role in ("sbcntr-ecs-task-execution", "sbcntr-frontend-task", "sbcntr-backend-task"):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
    secret = boto3.client("secretsmanager").create_secret(
        Name="sbcntr-db", SecretString='{"password":"pw"}'
    )["ARN"]
    logs = boto3.client("logs")
    for group in ("frontend", "backend", "unparsed", "log-router", "xray-daemon"):
        logs.create_log_group(logGroupName=f"/sbcntr/dev/{group}")
    boto3.client("s3").create_bucket(
        Bucket=env["LOG_BUCKET"], CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"}
    )
    boto3.client("ecs").create_cluster(clusterName=env["ECS_CLUSTER"])
    return {
        **env,
        "PRIVATE_SUBNET_1": subnets[0],
        "PRIVATE_SUBNET_2": subnets[1],
        "FRONTEND_SECURITY_GROUP": groups["front"],
        "BACKEND_SECURITY_GROUP": groups["back"],
        "DB_SECRET_ARN": secret,
    }


def test_deploy_diff_rollback_and_scaling_on_moto(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "ap-northeast-1",
        "AWS_REGION": "ap-northeast-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    env = prerequisites(dict(ENV))

    # moto never completes a rollout (its deployments stay IN_PROGRESS): deploy
    # without waiting, and check below that waiting does not claim success.
    first = {s: ecs.deploy(ecs.render(s, env, TASKDEFS), wait_seconds=0) for s in SERVICES}
    for service, result in first.items():
        assert result.revision == 1
        assert result.image.endswith(f"sbcntr-{service}:0a1b2c3")

    changed = {**env, "IMAGE_TAG": "d4e5f60"}
    rendered = ecs.render("backend", changed, TASKDEFS)
    difference = ecs.diff(rendered)
    assert (
        '-      "image": "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/sbcntr-backend:0a1b2c3"'
        in difference
    )
    assert (
        '+      "image": "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/sbcntr-backend:d4e5f60"'
        in difference
    )
    with pytest.raises(ecs.DeployError, match="not stable"):
        ecs.deploy(rendered, wait_seconds=1)
    second = ecs.deploy(rendered, wait_seconds=0)
    assert second.revision == 3  # revision 2 was registered by the deploy that timed out
    assert second.image.endswith(":d4e5f60")
    assert ecs.diff(rendered) == ""

    back = ecs.rollback(rendered, wait_seconds=0)
    assert back.revision == 2
    back = ecs.rollback(rendered, wait_seconds=0)
    assert back.revision == 1
    assert back.image.endswith(":0a1b2c3")
    service = boto3.client("ecs").describe_services(
        cluster=env["ECS_CLUSTER"], services=["sbcntr-backend"]
    )["services"][0]
    assert service["taskDefinition"].endswith(":1")

    scaling = boto3.client("application-autoscaling")
    targets = scaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert {t["ResourceId"] for t in targets} == {
        f"service/sbcntr-dev/sbcntr-{s}" for s in SERVICES
    }
    policies = scaling.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
    assert {p["PolicyName"] for p in policies} == {
        f"sbcntr-{s}-{k}" for s in SERVICES for k in ("cpu", "requests")
    }


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ENV}
    return subprocess.run(
        [str(Path(sys.executable).parent / "sbcntrctl"), "deploy", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_render_names_missing_variables_and_verify_reports_problems(tmp_path: Path) -> None:
    missing = run_cli("render", "backend", env={"AWS_ACCOUNT_ID": "123456789012"})
    assert missing.returncode == 2
    assert "IMAGE_TAG" in missing.stderr
    assert "render failed" in missing.stderr
    ok = run_cli("verify", "frontend", env=ENV)
    assert ok.returncode == 0, ok.stderr
    assert "frontend: verified" in ok.stdout
    broken = tmp_path / "taskdefs"
    shutil.copytree(TASKDEFS, broken)
    td = broken / "frontend" / "task-def.json"
    td.write_text(
        td.read_text().replace('"readonlyRootFilesystem": true', '"readonlyRootFilesystem": false')
    )
    bad = run_cli("verify", "frontend", "--dir", str(broken), env=ENV)
    assert bad.returncode == 1
    assert "readonlyRootFilesystem: must be true" in bad.stderr
