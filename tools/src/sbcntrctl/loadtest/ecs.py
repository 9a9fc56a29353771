"""A distributed load run on Fargate: ``sbcntrctl loadtest ecs run ENV``.

One run is a Locust master task and N worker tasks of the load-generator
image (``loadtest/Dockerfile``), from the task definitions in
``taskdefs/loadtest/``, in the environment's app subnets with a security
group that may reach the ALB (and whose members reach the master on 5557):

0. check that the image ``sbcntr-loadtest:<--image-tag>`` is in the account's
   ECR and built for the task definitions' ``runtimePlatform`` (ARM64), as
   ``sbcntrctl deploy verify`` checks the services' images: the release pushes
   it tagged with the full commit SHA, for that platform (docs/release.md);
1. register both task definitions, rendered for the environment and image;
2. RunTask the master: the run's options as ``LOAD_*`` variables, the target
   as ``LOCUST_HOST``, ``LOCUST_EXPECT_WORKERS=N``, and ``LOAD_UPLOAD_S3``;
3. wait until it runs and read its private IP from its network attachment;
4. RunTask the workers (at most 10 per call, RunTask's limit) with
   ``LOCUST_MASTER_NODE_HOST`` set to that IP;
5. wait for the master to stop (the shape ends the run), printing what it
   does; a worker that stops early is printed (the master reports it lost);
6. stop every task it started that still runs, on every path: the end of
   the run, an error, Ctrl+C;
7. download ``summary.json``, ``steps.csv`` and ``locust.html`` from the
   master's S3 prefix (``sbcntrctl.loadtest.upload``) to ``reports/<run id>/``
   and print the same verdict as a local run.

The AWS calls and what AWS documents they need: ECR DescribeImages,
BatchGetImage and GetDownloadUrlForLayer on ``sbcntr-loadtest`` (the image
check; Amazon ECR API Reference), RegisterTaskDefinition
(``ecs:RegisterTaskDefinition`` and ``iam:PassRole`` on the roles), RunTask
(``ecs:RunTask``; ``count`` 1-10; awsvpc tasks need ``networkConfiguration``),
DescribeTasks (at most 100 tasks per call), StopTask, S3 ListObjectsV2 and
GetObject on the bucket (Amazon ECS API Reference, RunTask / DescribeTasks /
StopTask; Amazon S3 API Reference, ListObjectsV2).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from sbcntrctl.deploy import platforms, preflight
from sbcntrctl.deploy.aws import DeployError
from sbcntrctl.deploy.template import render_json
from sbcntrctl.loadtest import runinfo, upload

TASKDEFS = Path(__file__).resolve().parents[4] / "taskdefs" / "loadtest"
CONTAINER = "locust"
STARTED_BY = "sbcntrctl-loadtest"
RUN_TASK_MOST = 10  # RunTask's count: 1-10 (Amazon ECS API Reference, RunTask)
DESCRIBE_MOST = 100  # DescribeTasks: at most 100 tasks per call
S3_PREFIX = "loadtest/"
REPORTS = ("summary.json", "steps.csv", "cpu.csv", "locust.html")


class LoadRunError(Exception):
    """The run cannot go on; the message says what and where."""


@dataclass(frozen=True)
class Plan:
    """Everything a run on ECS needs, checked before any task starts."""

    env_name: str
    account: str
    region: str
    cluster: str
    image_tag: str
    bucket: str
    subnets: list[str]
    security_group: str
    target: str
    workers: int
    run_id: str
    options: dict[str, str] = field(default_factory=dict)  # LOAD_* variables of the run
    assign_public_ip: bool = False

    def template_env(self) -> dict[str, str]:
        return {
            "AWS_ACCOUNT_ID": self.account,
            "AWS_REGION": self.region,
            "ENV_NAME": self.env_name,
            "IMAGE_TAG": self.image_tag,
            "LOADTEST_BUCKET": self.bucket,
        }


def task_definition(role: str, plan: Plan, directory: Path = TASKDEFS) -> dict[str, Any]:
    """The ``role`` (master or worker) task definition, rendered for the plan."""
    rendered: dict[str, Any] = render_json(directory / f"{role}-task-def.json", plan.template_env())
    return rendered


def check_image(plan: Plan, fetch: platforms.Download = platforms.download) -> None:
    """The image the run's tasks would pull is in ECR and runs on their platform;
    otherwise LoadRunError naming the image (before any task starts: a missing image
    or one built for another CPU fails only as the tasks start)."""
    try:
        problems = preflight.images(task_definition("master", plan), fetch)
    except DeployError as exc:
        msg = f"cannot check the image: {exc}"
        raise LoadRunError(msg) from exc
    if problems:
        msg = "; ".join(problem.message for problem in problems)
        raise LoadRunError(msg)


def _environment(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in sorted(values.items())]


def master_environment(plan: Plan) -> dict[str, str]:
    return {
        **plan.options,
        "LOAD_RUN_ID": plan.run_id,
        "LOCUST_HOST": plan.target,
        "LOCUST_EXPECT_WORKERS": str(plan.workers),
        "LOAD_UPLOAD_S3": f"s3://{plan.bucket}/{S3_PREFIX}",
    }


def run_task_input(
    plan: Plan, task_definition_arn: str, count: int, environment: Mapping[str, str]
) -> dict[str, Any]:
    """RunTask's parameters: the app subnets, the load generator's group, no public IP."""
    return {
        "cluster": plan.cluster,
        "taskDefinition": task_definition_arn,
        "count": count,
        "launchType": "FARGATE",
        "startedBy": STARTED_BY,
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": plan.subnets,
                "securityGroups": [plan.security_group],
                "assignPublicIp": "ENABLED" if plan.assign_public_ip else "DISABLED",
            }
        },
        "overrides": {
            "containerOverrides": [{"name": CONTAINER, "environment": _environment(environment)}]
        },
    }


def private_ip(task: Mapping[str, Any]) -> str | None:
    """The task's private IPv4 address, from its ENI attachment (once it has one)."""
    for attachment in task.get("attachments", []):
        for detail in attachment.get("details", []):
            if detail.get("name") == "privateIPv4Address" and detail.get("value"):
                return str(detail["value"])
    return None


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class Run:
    """The tasks of one run; :meth:`stop_all` stops every one still running."""

    plan: Plan
    ecs: Any
    say: Callable[[str], None] = print
    poll_seconds: float = 5.0
    started: list[str] = field(default_factory=list)

    def register(self, role: str) -> str:
        td = task_definition(role, self.plan)
        arn: str = self.ecs.register_task_definition(**td)["taskDefinition"]["taskDefinitionArn"]
        return arn

    def start(self, task_definition_arn: str, count: int, environment: dict[str, str]) -> list[str]:
        started = self.ecs.run_task(
            **run_task_input(self.plan, task_definition_arn, count, environment)
        )
        arns = [task["taskArn"] for task in started.get("tasks", [])]
        self.started += arns
        if started.get("failures") or len(arns) != count:
            reasons = "; ".join(
                f"{f.get('arn', '')} {f.get('reason', '')} {f.get('detail', '')}".strip()
                for f in started.get("failures", [])
            )
            msg = f"{count - len(arns)} of {count} tasks did not start: {reasons or 'no reason'}"
            raise LoadRunError(msg)
        return arns

    def describe(self, arns: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for chunk in _chunks(arns, DESCRIBE_MOST):
            found += self.ecs.describe_tasks(cluster=self.plan.cluster, tasks=chunk)["tasks"]
        return found

    def wait_for_ip(self, arn: str, timeout: float) -> str:
        """The master's private IP once it runs; LoadRunError if it stops or times out."""
        deadline = time.monotonic() + timeout
        while True:
            (task,) = self.describe([arn])
            address = private_ip(task)
            if task.get("lastStatus") == "STOPPED":
                msg = f"master task {_short(arn)} stopped: {task.get('stoppedReason', '-')}"
                raise LoadRunError(msg)
            if task.get("lastStatus") == "RUNNING" and address:
                return address
            if time.monotonic() > deadline:
                msg = f"master task {_short(arn)} not running after {timeout:g} s"
                raise LoadRunError(msg)
            time.sleep(self.poll_seconds)

    def wait_for_master(self, master: str, workers: list[str], timeout: float) -> dict[str, Any]:
        """Wait for the master to stop; say when a worker stops before it."""
        deadline = time.monotonic() + timeout
        gone: set[str] = set()
        while True:
            tasks = {t["taskArn"]: t for t in self.describe([master, *workers])}
            for arn in workers:
                task = tasks.get(arn, {})
                if task.get("lastStatus") == "STOPPED" and arn not in gone:
                    gone.add(arn)
                    self.say(
                        f"worker task {_short(arn)} stopped before the run ended: "
                        f"{task.get('stoppedReason', '-')}"
                    )
            if tasks[master].get("lastStatus") == "STOPPED":
                return tasks[master]
            if time.monotonic() > deadline:
                msg = f"master task {_short(master)} still running after {timeout:g} s"
                raise LoadRunError(msg)
            time.sleep(self.poll_seconds)

    def stop_all(self, reason: str) -> list[str]:
        """StopTask every task of the run not stopped yet; the ones it stopped."""
        stopped = []
        for task in self.describe(self.started) if self.started else []:
            if task.get("lastStatus") != "STOPPED" and task.get("desiredStatus") != "STOPPED":
                self.ecs.stop_task(cluster=self.plan.cluster, task=task["taskArn"], reason=reason)
                stopped.append(task["taskArn"])
        return stopped


def _short(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def collect(s3: Any, bucket: str, run_id: str, master_arn: str, destination: Path) -> list[Path]:
    """Download the master's reports of ``run_id`` to ``destination``.

    The master wrote them under ``loadtest/<role id>:<task id>/<run id>/``
    (sbcntrctl.loadtest.upload); the prefix is found by the master's task id.
    """
    task_id = _short(master_arn)
    prefixes = [
        found["Prefix"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=S3_PREFIX, Delimiter="/"
        )
        for found in page.get("CommonPrefixes", [])
        if found["Prefix"].endswith(f":{task_id}/")
    ]
    if not prefixes:
        msg = f"no reports of master task {task_id} in s3://{bucket}/{S3_PREFIX}"
        raise LoadRunError(msg)
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    for name in REPORTS:
        key = f"{prefixes[0]}{run_id}/{name}"
        try:
            s3.download_file(bucket, key, str(destination / name))
        except ClientError as exc:  # a report the run did not write (cpu.csv, steps of a soak)
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
                raise
            continue
        written.append(destination / name)
    if destination / "summary.json" not in written:
        msg = f"s3://{bucket}/{prefixes[0]}{run_id}/summary.json is missing"
        raise LoadRunError(msg)
    return written


def read_summary(folder: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((folder / "summary.json").read_text())
    return summary


def default_run_id() -> str:
    return "ecs-" + time.strftime("%Y%m%dT%H%M%S", time.gmtime())


def check(plan: Plan) -> None:
    """Refuse a plan that cannot run, before anything starts (ValueError naming the option)."""
    runinfo.check_run_id(plan.run_id)
    if plan.workers < 1:
        msg = f"--workers must be at least 1, got {plan.workers}"
        raise ValueError(msg)
    if not plan.target.startswith(("http://", "https://")):
        msg = f"--target {plan.target!r}: give the ALB's URL, http(s)://..."
        raise ValueError(msg)
    if not plan.subnets or not plan.security_group:
        msg = "give --subnets (the app subnets) and --security-group (one that reaches the ALB)"
        raise ValueError(msg)
    upload.parse(f"s3://{plan.bucket}/{S3_PREFIX}")
