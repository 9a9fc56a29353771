"""``sbcntrctl loadtest ecs run`` against a moto server: the tasks it starts (command,
environment, network), the reports it collects, and the tasks it stops on Ctrl+C.

The test plays the master container's part: once the workers are started it
uploads the reports where the master's task role lets it write
(``loadtest/<role id>:<task id>/<run id>/``) and stops the master task, as
the master does when its shape ends. What AWS documents and moto does not
check is asserted on the calls themselves: RunTask's count of 1-10 per call
and ``networkConfiguration`` for awsvpc tasks (Amazon ECS API Reference,
RunTask), DescribeTasks' 100 tasks per call (DescribeTasks), and every
RegisterTaskDefinition input valid for the pinned botocore model.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import httpx
import pytest
from botocore.validate import ParamValidator
from parliament import analyze_policy_string

from sbcntrctl.__main__ import build_parser
from sbcntrctl.deploy.template import render_json
from sbcntrctl.loadtest import ecs
from tests.support import ROOT, free_port, stop_process
from tests.tools.deploy_support import aws_env, push_image, running_moto_server

SBCNTRCTL = str(Path(sys.executable).parent / "sbcntrctl")
ROLE_ID = "AROAEXAMPLELOADTEST"  # the master task role's id in aws:userid
# The tag the release pushes: the full commit SHA (sbcntrctl.release.images).
IMAGE_TAG = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_moto_server(tmp_path_factory.mktemp("moto")) as url:
        # tasks stay RUNNING until stopped (moto's default moves them on to STOPPED)
        transition = {"progression": "manual", "times": 1_000_000}
        httpx.post(
            f"{url}/moto-api/state-manager/set-transition",
            json={"model_name": "ecs::task", "transition": transition},
        ).raise_for_status()
        yield url


@pytest.fixture
def account(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A cluster, an app subnet, the load generators' group and the reports bucket."""
    for name, value in aws_env(moto_url).items():
        monkeypatch.setenv(name, value)
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # an app VPC resolves its hosts' names (infra/); moto names ENIs only then
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"lt-{time.time_ns()}", Description="lt", VpcId=vpc)
    cluster = f"sbcntr-dev-{time.time_ns()}"  # the module's moto server holds earlier tests' tasks
    boto3.client("ecs").create_cluster(clusterName=cluster)
    bucket = f"sbcntr-loadtest-{time.time_ns()}"
    boto3.client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"}
    )
    push_once(IMAGE_TAG)  # as the release pushes it: linux/arm64
    return {"subnet": subnet, "group": group["GroupId"], "bucket": bucket, "cluster": cluster}


def push_once(tag: str, platforms: tuple[str, ...] = ("linux/arm64",)) -> None:
    """``sbcntr-loadtest:<tag>`` in the module's moto ECR (tags are immutable there too)."""
    ecr = boto3.client("ecr")
    try:
        ecr.describe_images(repositoryName="sbcntr-loadtest", imageIds=[{"imageTag": tag}])
    except (ecr.exceptions.RepositoryNotFoundException, ecr.exceptions.ImageNotFoundException):
        push_image("sbcntr-loadtest", tag, platforms)


def start_run(account: dict[str, str], tmp_path: Path, run_id: str, workers: int) -> Any:
    return subprocess.Popen(
        [
            *(SBCNTRCTL, "loadtest", "ecs", "run", "dev", "--workers", str(workers)),
            *("--target", "https://alb.example.com", "--image-tag", IMAGE_TAG),
            *("--bucket", account["bucket"], "--subnets", account["subnet"]),
            *("--security-group", account["group"], "--run-id", run_id),
            *("--cluster", account["cluster"]),
            *("--shape", "step", "--step-rps", "500", "--steps", "2", "--step-seconds", "5"),
            *("--load-env", "LOAD_MAX_P95_MS=300", "--poll-seconds", "0.2"),
            *("--reports", str(tmp_path / "reports")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


def tasks_of_run(cluster: str, expected: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The run's tasks once ``expected`` of them exist (master first)."""
    client = boto3.client("ecs")
    deadline = time.monotonic() + timeout
    while True:
        arns = client.list_tasks(cluster=cluster, startedBy=ecs.STARTED_BY)["taskArns"]
        arns += client.list_tasks(
            cluster=cluster, startedBy=ecs.STARTED_BY, desiredStatus="STOPPED"
        )["taskArns"]
        if len(arns) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    tasks = client.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []
    return sorted(tasks, key=lambda t: "worker" in t["taskDefinitionArn"])


def environment_of(task: dict[str, Any]) -> dict[str, str]:
    (override,) = task["overrides"]["containerOverrides"]
    return {pair["name"]: pair["value"] for pair in override["environment"]}


def test_a_run_starts_master_then_workers_collects_the_reports_and_stops_every_task(
    account: dict[str, str], tmp_path: Path
) -> None:
    run = start_run(account, tmp_path, "ecs-1", workers=12)
    try:
        master, *workers = tasks_of_run(account["cluster"], 1 + 12)
        assert len(workers) == 12  # in two RunTask calls: at most 10 per call
        assert "loadtest-master" in master["taskDefinitionArn"]
        master_ip = ecs.private_ip(master)
        env = environment_of(master)
        assert env["LOAD_RUN_ID"] == "ecs-1"
        assert env["LOCUST_EXPECT_WORKERS"] == "12"
        assert env["LOCUST_HOST"] == "https://alb.example.com"
        assert env["LOAD_SHAPE"] == "step"
        assert env["LOAD_STEP_RPS"] == "500.0"
        assert env["LOAD_MAX_P95_MS"] == "300"
        assert env["LOAD_UPLOAD_S3"] == f"s3://{account['bucket']}/loadtest/"
        for worker in workers:
            assert environment_of(worker) == {"LOCUST_MASTER_NODE_HOST": master_ip}
        for task in (master, *workers):
            (attachment,) = task["attachments"]
            details = {d["name"]: d["value"] for d in attachment["details"]}
            assert details["subnetId"] == account["subnet"]
        # the master's part: its reports under its own prefix, then it stops
        task_id = master["taskArn"].rsplit("/", 1)[-1]
        prefix = f"loadtest/{ROLE_ID}:{task_id}/ecs-1/"
        s3 = boto3.client("s3")
        summary = {
            "run_id": "ecs-1",
            "shape": "step",
            "started_at": "2026-11-27T01:00:00.000+00:00",
            "ended_at": "2026-11-27T01:00:15.000+00:00",
            "seconds": 15.0,
            "requests": 11250,
            "failures": 0,
            "p95_ms": 120.0,
            "p99_ms": 200.0,
            "rps": 750.0,
            "missed": [],
            "warnings": [],
            "workers": 12,
            "generators": [],
        }
        s3.put_object(
            Bucket=account["bucket"], Key=prefix + "summary.json", Body=json.dumps(summary)
        )
        s3.put_object(Bucket=account["bucket"], Key=prefix + "steps.csv", Body=b"phase\n")
        s3.put_object(Bucket=account["bucket"], Key=prefix + "locust.html", Body=b"<html>")
        boto3.client("ecs").stop_task(cluster=account["cluster"], task=master["taskArn"])
        output, errors = run.communicate(timeout=60)
    finally:
        stop_process(run, signal.SIGKILL, timeout=10)
    assert run.returncode == 0, output + errors
    assert "run ecs-1: 11250 requests, 0 failed, p95 120 ms, p99 200 ms, 750.00 req/s" in output
    assert json.loads((tmp_path / "reports" / "summary.json").read_text()) == summary
    # STEP4 reads the same window from CloudWatch
    assert (
        "sbcntrctl capacity --cloudwatch dev --start 2026-11-27T01:00:00.000+00:00 "
        "--end 2026-11-27T01:00:15.000+00:00" in output
    )
    assert (tmp_path / "reports" / "locust.html").read_text() == "<html>"
    assert {t["lastStatus"] for t in tasks_of_run(account["cluster"], 13)} == {"STOPPED"}


def test_ctrl_c_stops_every_task_the_run_started(account: dict[str, str], tmp_path: Path) -> None:
    run = start_run(account, tmp_path, "ecs-2", workers=2)
    try:
        assert len(tasks_of_run(account["cluster"], 3)) == 3
        run.send_signal(signal.SIGINT)
        output, errors = run.communicate(timeout=60)
    finally:
        stop_process(run, signal.SIGKILL, timeout=10)
    assert run.returncode == 130, output + errors
    assert "every task of the run stopped" in errors
    tasks = tasks_of_run(account["cluster"], 3)
    assert len(tasks) == 3
    assert {t["desiredStatus"] for t in tasks} == {"STOPPED"}


def test_bad_options_are_refused_before_any_task_starts(
    account: dict[str, str], tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            *(SBCNTRCTL, "loadtest", "ecs", "run", "dev", "--workers", "0"),
            *("--target", "https://alb.example.com", "--image-tag", "0a1b2c3"),
            *("--bucket", account["bucket"], "--subnets", account["subnet"]),
            *("--security-group", account["group"], "--cluster", account["cluster"]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "sbcntrctl loadtest ecs run: --workers must be at least 1, got 0"
    )
    assert tasks_of_run(account["cluster"], 1, timeout=0) == []


def test_an_image_not_pushed_or_built_for_another_cpu_is_refused_before_any_task_starts(
    account: dict[str, str],
) -> None:
    """The run checks ``sbcntr-loadtest:<tag>`` as ``deploy verify`` checks the
    services' images (ECR DescribeImages, then the manifest's platforms: Amazon ECR
    API Reference, BatchGetImage): ECS would start the tasks and fail them only at
    the pull (CannotPullContainerError) or at the first instruction (exec format)."""
    amd64_only = "fedcba9876543210fedcba9876543210fedcba98"
    push_once(amd64_only, ("linux/amd64",))
    for tag, error in (
        ("e" * 40, f"sbcntr-loadtest:{'e' * 40} is not in ECR: push it first"),
        (amd64_only, f"sbcntr-loadtest:{amd64_only} is built for linux/amd64, not for linux/arm64"),
    ):
        result = subprocess.run(
            [
                *(SBCNTRCTL, "loadtest", "ecs", "run", "dev", "--workers", "2"),
                *("--target", "https://alb.example.com", "--image-tag", tag),
                *("--bucket", account["bucket"], "--subnets", account["subnet"]),
                *("--security-group", account["group"], "--cluster", account["cluster"]),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"sbcntrctl loadtest ecs run: {error}"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert tasks_of_run(account["cluster"], 1, timeout=0) == []
    definitions = boto3.client("ecs").list_task_definitions(familyPrefix="sbcntr-dev-loadtest")
    assert definitions["taskDefinitionArns"] == []


def test_the_task_definitions_are_valid_register_task_definition_input() -> None:
    plan = ecs.Plan(
        *("dev", "123456789012", "ap-northeast-1", "sbcntr-dev", "0a1b2c3", "bucket"),
        *(["subnet-1"], "sg-1", "https://alb.example.com", 2, "ecs-1"),
    )
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    for role in ("master", "worker"):
        td = ecs.task_definition(role, plan)
        report = ParamValidator().validate(td, shape)
        assert not report.has_errors(), report.generate_report()
        (container,) = td["containerDefinitions"]
        assert container["readonlyRootFilesystem"] is True
        assert container["user"] == "10001:10001"
        assert container["command"][0] == f"--{role}"
    assert "taskRoleArn" not in ecs.task_definition("worker", plan)  # workers touch no AWS API


def test_every_loadtest_subcommand_and_option_has_help() -> None:
    parser = build_parser()

    def walk(command: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, Any]]:
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    yield f"{path} {choice.dest}", choice
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction):
                yield f"{path} {action.dest}", action

    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    found = list(walk(commands.choices["loadtest"], "loadtest"))
    assert any(name.endswith("run workers") for name, _ in found)
    assert [name for name, action in found if not action.help] == []
    shown = subprocess.run(
        [SBCNTRCTL, "loadtest", "ecs", "run", "--help"], capture_output=True, text=True, check=True
    )
    assert "(default: sbcntr-ENV)" in shown.stdout
    assert "(300.0)" in shown.stdout


def test_the_master_uploads_its_reports_under_its_own_prefix(
    account: dict[str, str], tmp_path: Path
) -> None:
    """A real (local, one-second) run with --upload-s3: the reports and the HTML report land
    under ``loadtest/<caller's user id>/<run id>/``, the prefix the task role allows."""
    result = subprocess.run(
        [
            *(str(Path(sys.executable).parent / "locust"), "-f", str(ROOT / "loadtest")),
            *("--headless", "--only-summary", "--host", f"http://127.0.0.1:{free_port()}"),
            *("--run-id", "up-1", "--shape-duration", "1", "--report-dir", str(tmp_path)),
            *("--html", str(tmp_path / "locust.html")),
            *("--upload-s3", f"s3://{account['bucket']}/loadtest/"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr[-3000:]  # nothing answered: every request failed
    user_id = boto3.client("sts").get_caller_identity()["UserId"]
    listed = boto3.client("s3").list_objects_v2(Bucket=account["bucket"], Prefix="loadtest/")
    keys = sorted(item["Key"] for item in listed["Contents"])
    assert keys == [
        f"loadtest/{user_id}/up-1/{name}" for name in ("locust.html", "steps.csv", "summary.json")
    ]
    assert f"uploaded: s3://{account['bucket']}/loadtest/{user_id}/up-1/summary.json" in (
        result.stdout
    )


def test_the_roles_may_do_only_what_a_run_needs() -> None:
    """The master's task role writes only its own prefix (``${aws:userid}`` is
    ``<role id>:<task id>`` for an ECS task role: IAM User Guide, "IAM policy
    elements: Variables and tags"); both policies pass an IAM linter."""
    env = {"AWS_ACCOUNT_ID": "123456789012", "LOADTEST_BUCKET": "reports"}
    master = render_json(ecs.TASKDEFS / "iam" / "task-role-policy-master.json", env)
    (statement,) = master["Statement"]
    assert statement["Action"] == "s3:PutObject"
    assert statement["Resource"] == "arn:aws:s3:::reports/loadtest/${aws:userid}/*"
    execution = render_json(ecs.TASKDEFS / "iam" / "execution-role-policy.json", env)
    for policy in (master, execution):
        assert analyze_policy_string(json.dumps(policy)).findings == []
