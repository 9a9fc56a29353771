"""``sbcntrctl deploy migrate``: the backend's migration as a one-off ECS task.

Checked against the ECS API model and the RunTask rules, on a moto server
(which runs no container: its tasks stop with exit code 0 after a few
DescribeTasks calls), and the reading of stopped tasks against the shapes
the DescribeTasks API reference documents.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import httpx
import pytest
import yaml
from botocore.validate import ParamValidator

from sbcntrctl.deploy import ecs, migrate
from sbcntrctl.release import rollout
from tests.infra import release_permissions
from tests.support import ROOT
from tests.tools.deploy_support import (
    ENV,
    TASKDEFS,
    aws_env,
    moto_server,
    prerequisites,
    push_image,
    recorded_calls,
    run_cli,
)

__all__ = ["moto_server"]  # the fixture, used by name below

TASK_DEFINITION = "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/sbcntr-backend:7"


def test_run_task_input_is_valid_for_the_ecs_api() -> None:
    rendered = ecs.render("backend", ENV, TASKDEFS)
    params = migrate.run_task_input(rendered, TASK_DEFINITION)
    model = botocore.session.get_session().get_service_model("ecs")
    report = ParamValidator().validate(params, model.operation_model("RunTask").input_shape)
    assert not report.has_errors(), report.generate_report()
    # Rules the model does not carry (RunTask API reference): a container
    # override must name a container of the task definition; a capacity
    # provider strategy excludes launchType.
    containers = {c["name"] for c in rendered.task_definition["containerDefinitions"]}
    overrides = params["overrides"]["containerOverrides"]
    assert {o["name"] for o in overrides} <= containers
    assert not ("launchType" in params and "capacityProviderStrategy" in params)
    # Tagging on creation needs ecs:TagResource as well ("Grant permission to
    # tag resources on creation"): the migration task asks for RunTask only.
    assert not {"tags", "propagateTags", "enableECSManagedTags"} & params.keys()
    # The service's own network: private subnets, its security group, no public IP.
    assert params["networkConfiguration"] == rendered.service_definition["networkConfiguration"]
    assert params["taskDefinition"] == TASK_DEFINITION
    # Its own role, the only one that may read the schema owner's secret; passing it
    # needs iam:PassRole on it (RunTask API reference, overrides.taskRoleArn).
    task_role = rendered.task_definition["taskRoleArn"]
    assert task_role == "arn:aws:iam::123456789012:role/sbcntr-dev-backend-task"
    assert params["overrides"]["taskRoleArn"] == task_role.removesuffix("task") + "migrate"


def test_a_task_role_without_the_naming_rule_has_no_migration_role() -> None:
    with pytest.raises(ecs.DeployError, match="does not end in -task"):
        migrate.migration_role_arn("arn:aws:iam::123456789012:role/custom")


def test_ecs_runs_the_command_compose_runs_without_the_seed() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["migrate"]["command"] == [*migrate.MIGRATE_COMMANDS["backend"], "--seed"]
    assert compose["migrate"]["image"] == compose["backend"]["image"]
    assert (
        compose["migrate"]["environment"]["DATABASE_URL"]
        == (compose["backend"]["environment"]["DATABASE_URL"])
    )
    assert compose["backend"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert "--seed" not in migrate.MIGRATE_COMMANDS["backend"]
    assert not migrate.has_migrations("frontend")


# DescribeTasks ``tasks`` entries as the API reference documents them.
STOPPED = {
    "taskArn": "arn:aws:ecs:ap-northeast-1:123456789012:task/sbcntr-dev/0123abcd",
    "lastStatus": "STOPPED",
    "stopCode": "EssentialContainerExited",
    "stoppedReason": "Essential container in task exited",
    "containers": [
        {"name": "log-router", "exitCode": 0},
        {"name": "backend", "exitCode": 0},
    ],
}


def stopped(**changes: Any) -> dict[str, Any]:
    task = copy.deepcopy(STOPPED)
    backend = changes.pop("backend", {})
    task.update(changes)
    task["containers"][1].update(backend)
    return task


@pytest.mark.parametrize(
    ("task", "exit_code", "failed", "reason"),
    [
        (stopped(), 0, False, "Essential container in task exited"),
        (stopped(backend={"exitCode": 1}), 1, True, "Essential container in task exited"),
        (
            stopped(
                stopCode="TaskFailedToStart",
                stoppedReason="CannotPullContainerError: pull image manifest has been retried",
                backend={"exitCode": None, "reason": "CannotPullContainerError"},
            ),
            None,
            True,
            "CannotPullContainerError: pull image manifest has been retried",
        ),
        (
            stopped(stopCode="UserInitiated", stoppedReason="Task stopped by user"),
            0,
            True,
            "Task stopped by user",
        ),
    ],
    ids=["exit 0", "exit 1", "failed to start", "stopped by a user"],
)
def test_stopped_task_is_read_for_exit_code_and_reason(
    task: dict[str, Any], exit_code: int | None, failed: bool, reason: str
) -> None:
    result = migrate.outcome(task, "backend")
    assert result.exit_code == exit_code
    assert reason in result.stopped_reason
    assert result.task_id == "0123abcd"
    assert (result.exit_code != 0 or result.stop_code in migrate.ABNORMAL_STOP_CODES) is failed


@pytest.fixture
def moto_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    aws = aws_env(moto_server)
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    env = prerequisites(dict(ENV))
    # Private Fargate tasks reach ECR and Secrets Manager through interface
    # endpoints, whose private DNS needs DNS hostnames on (moto's RunTask with
    # awsvpc also fails without it: the network interface gets no DNS name).
    ec2 = boto3.client("ec2")
    vpc = ec2.describe_subnets(SubnetIds=[env["PRIVATE_SUBNET_1"]])["Subnets"][0]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    return {**env, **aws}


@pytest.fixture
def moto_taskdefs(tmp_path: Path) -> Path:
    """The templates with a memory reservation on every container: moto's RunTask needs it.

    moto 5.2.5 answers RunTask with a 500 (TypeError adding None) for a
    Fargate task definition whose container sets neither ``memory`` nor
    ``memoryReservation``; AWS accepts it (the task-level memory applies).
    """
    copy_dir = tmp_path / "taskdefs"
    shutil.copytree(TASKDEFS, copy_dir)
    path = copy_dir / "backend" / "task-def.json"
    td = json.loads(path.read_text())
    for container in td["containerDefinitions"]:
        if "memory" not in container:
            container.setdefault("memoryReservation", 128)
    path.write_text(json.dumps(td, indent=2))
    return copy_dir


def task_progression(moto_server: str, transition: dict[str, Any]) -> None:
    """How moto's tasks move from RUNNING to STOPPED (its state manager)."""
    response = httpx.post(
        f"{moto_server}/moto-api/state-manager/set-transition",
        json={"model_name": "ecs::task", "transition": transition},
    )
    assert response.status_code == 201, response.text


def migration_tasks(env: dict[str, str]) -> list[dict[str, Any]]:
    client = boto3.client("ecs")
    arns = client.list_tasks(cluster=env["ECS_CLUSTER"], startedBy=migrate.STARTED_BY)["taskArns"]
    arns += client.list_tasks(
        cluster=env["ECS_CLUSTER"], startedBy=migrate.STARTED_BY, desiredStatus="STOPPED"
    )["taskArns"]
    if not arns:
        return []
    return list(client.describe_tasks(cluster=env["ECS_CLUSTER"], tasks=arns)["tasks"])


def test_migration_task_runs_and_is_waited_for_on_moto(
    moto_env: dict[str, str], moto_taskdefs: Path
) -> None:
    rendered = ecs.render("backend", moto_env, moto_taskdefs)
    # moto's default: a task advances one state per DescribeTasks call, four to STOPPED.
    task = migrate.run_latest(rendered, timeout_seconds=30, poll_seconds=0.05)
    assert task.exit_code == 0
    [described] = migration_tasks(moto_env)
    assert described["lastStatus"] == "STOPPED"
    assert described["taskDefinitionArn"].endswith("task-definition/sbcntr-backend:1")
    assert described["overrides"]["containerOverrides"] == [
        {"name": "backend", "command": ["python", "-m", "backend", "migrate"]}
    ]


@pytest.mark.slow
def test_deploy_runs_the_migration_first_and_stops_when_it_does_not_finish(
    moto_server: str, moto_env: dict[str, str], moto_taskdefs: Path
) -> None:
    directory = ("--dir", str(moto_taskdefs))
    # A migration that never ends: the task stays RUNNING (moto's manual progression).
    task_progression(moto_server, {"progression": "manual", "times": 1_000_000})
    stuck = run_cli("deploy", "backend", "--wait", "1", *directory, env=moto_env)
    assert stuck.returncode == 1
    assert "not stopped after 1 s" in stuck.stderr
    assert "the service was not updated" in stuck.stderr
    services = boto3.client("ecs").describe_services(
        cluster=moto_env["ECS_CLUSTER"], services=["sbcntr-backend"]
    )["services"]
    assert [s for s in services if s["status"] == "ACTIVE"] == [], "no service was created"

    task_progression(moto_server, {"progression": "immediate"})
    deployed = run_cli("deploy", "backend", "--wait", "0", *directory, env=moto_env)
    assert deployed.returncode == 0, deployed.stderr
    service = boto3.client("ecs").describe_services(
        cluster=moto_env["ECS_CLUSTER"], services=["sbcntr-backend"]
    )["services"][0]
    # One migration per deploy: the stuck one ran revision 1, the second ran
    # the revision the service now runs, and finished. (moto records no task
    # times: the order is shown by the stuck deploy above creating nothing.)
    ran = {t["taskDefinitionArn"].rsplit(":", 1)[1]: t for t in migration_tasks(moto_env)}
    assert sorted(ran) == ["1", "2"]
    assert ran["2"]["lastStatus"] == "STOPPED"
    assert service["taskDefinition"] == ran["2"]["taskDefinitionArn"]

    alone = run_cli("migrate", "backend", *directory, env=moto_env)
    assert alone.returncode == 0, alone.stderr
    assert "sbcntr-backend: migration task" in alone.stdout
    assert "exited 0" in alone.stdout

    frontend = run_cli("migrate", "frontend", *directory, env=moto_env)
    assert frontend.returncode == 1
    assert "frontend has no database migrations" in frontend.stderr


def test_migration_that_cannot_start_is_reported(
    moto_env: dict[str, str], moto_taskdefs: Path
) -> None:
    env = {**moto_env, "ECS_CLUSTER": "no-such-cluster"}
    rendered = ecs.render("backend", env, moto_taskdefs)
    with pytest.raises(ecs.DeployError, match="migration task did not start"):
        migrate.run_latest(rendered, timeout_seconds=5, poll_seconds=0.05)


def test_release_deploy_migrates_before_the_backend_on_moto(
    moto_server: str,
    moto_env: dict[str, str],
    moto_taskdefs: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``sbcntrctl release deploy`` (the release workflow) runs the same migration first."""
    commit = "c" * 40
    for name, value in moto_env.items():
        monkeypatch.setenv(name, value)
    render = ecs.render
    monkeypatch.setattr(
        ecs, "render", lambda service, env, _dir=None: render(service, env, moto_taskdefs)
    )
    task_progression(moto_server, {"progression": "immediate"})
    digests = {}
    for repository in ("sbcntr-backend", "sbcntr-frontend", "sbcntr-log-router"):
        push_image(repository, commit)
        described = boto3.client("ecr").describe_images(
            repositoryName=repository, imageIds=[{"imageTag": commit}]
        )
        digests[repository] = described["imageDetails"][0]["imageDigest"]
    with recorded_calls() as calls:
        lines = list(rollout.deploy("dev", commit, digests, wait_seconds=0))
    services = [line for line in lines if not line.startswith("  ")]  # (then its scaling notes)
    assert [line.split()[1] for line in services] == ["sbcntr-backend:", "sbcntr-frontend:"]
    # A first deploy into an empty environment: every call it made has a row in the
    # table the CI roles are checked against (tests/infra/test_ci_identity.py).
    assert {"ecs:CreateService", "application-autoscaling:PutScalingPolicy"} <= set(calls)
    assert release_permissions.uncovered(calls) == []
    [task] = migration_tasks(moto_env)
    backend = boto3.client("ecs").describe_services(
        cluster=moto_env["ECS_CLUSTER"], services=["sbcntr-backend"]
    )["services"][0]
    assert task["taskDefinitionArn"] == backend["taskDefinition"]
    definition = boto3.client("ecs").describe_task_definition(
        taskDefinition=task["taskDefinitionArn"]
    )["taskDefinition"]
    assert definition["containerDefinitions"][0]["image"].endswith(digests["sbcntr-backend"])
