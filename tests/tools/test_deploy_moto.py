"""Deploy, roll back and reconcile scaling against a moto server.

Two kinds of server: on a "steady" one every deployment reads COMPLETED (moto
reports MOTO_ECS_SERVICE_RUNNING tasks, enough for the desired count); on a
"stuck" one every deployment stays IN_PROGRESS, as when tasks cannot start.
What ECS itself does (the circuit breaker rolling a deployment back, tasks
stopping with a reason) is played by the test with the same API calls.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from sbcntrctl.deploy import ecs
from sbcntrctl.deploy.aws import DeployError
from tests.support import free_port
from tests.tools.deploy_support import (
    ENV,
    TASKDEFS,
    aws_env,
    prerequisites,
    push_image,
    run_cli,
    running_moto_server,
)

BACKEND = "sbcntr-backend"
TASK_DEFINITIONS = "arn:aws:ecs:ap-northeast-1:123456789012:task-definition"


@pytest.fixture(scope="module")
def steady_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server on which deployments of up to 4 tasks reach steady state."""
    with running_moto_server(tmp_path_factory.mktemp("moto"), MOTO_ECS_SERVICE_RUNNING="4") as url:
        yield url


@pytest.fixture(scope="module")
def stuck_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server on which deployments never reach steady state."""
    with running_moto_server(tmp_path_factory.mktemp("moto"), MOTO_ECS_SERVICE_RUNNING="0") as url:
        yield url


def _account(url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    httpx.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
    for name, value in aws_env(url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return prerequisites(dict(ENV))


@pytest.fixture
def steady(steady_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh account whose deployments (of up to 4 tasks) reach steady state."""
    return _account(steady_server, monkeypatch)


@pytest.fixture
def stuck(stuck_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh account whose deployments never reach steady state."""
    return _account(stuck_server, monkeypatch)


def cli_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` plus the variables that point at the moto server."""
    return {**env, **{k: os.environ[k] for k in aws_env("") if k in os.environ}}


def service() -> dict[str, Any]:
    found = boto3.client("ecs").describe_services(cluster="sbcntr-dev", services=[BACKEND])
    return dict(found["services"][0])


def revisions() -> list[str]:
    arns = boto3.client("ecs").list_task_definitions(familyPrefix=BACKEND)["taskDefinitionArns"]
    return [a.rsplit("/", 1)[-1] for a in arns]


def tags(revision: str) -> dict[str, str]:
    arn = f"{TASK_DEFINITIONS}/{revision}"
    found = boto3.client("ecs").list_tags_for_resource(resourceArn=arn)["tags"]
    return {t["key"]: t["value"] for t in found}


def deploy(env: dict[str, str], wait: float = 5, **options: Any) -> ecs.Result:
    return ecs.deploy(ecs.render("backend", env, TASKDEFS), wait, **options)


# --- 1. rollback lands only on a revision that ran


def test_rollback_skips_revisions_that_never_ran_and_needs_no_variables(
    steady: dict[str, str],
) -> None:
    first = deploy(steady)
    assert first.revision == 1
    assert ecs.STEADY_TAG in tags(f"{BACKEND}:1")

    # The reported reproduction: a deploy to a cluster that does not exist
    # registered a revision, then failed. Now it stops before registering.
    with pytest.raises(DeployError, match="sbcntr-nope does not exist"):
        deploy({**steady, "ECS_CLUSTER": "sbcntr-nope"})
    assert revisions() == [f"{BACKEND}:1"]

    # Revision 2 is deployed without waiting and ECS rolls it back (circuit
    # breaker) before anybody saw it steady: it never ran.
    push_image("sbcntr-backend", "d4e5f60")
    push_image("sbcntr-log-router", "d4e5f60")
    assert deploy({**steady, "IMAGE_TAG": "d4e5f60"}, wait=0).revision == 2
    boto3.client("ecs").update_service(
        cluster="sbcntr-dev", service=BACKEND, taskDefinition=f"{TASK_DEFINITIONS}/{BACKEND}:1"
    )
    assert deploy(steady).revision == 3
    assert ecs.STEADY_TAG not in tags(f"{BACKEND}:2")
    assert ecs.STEADY_TAG in tags(f"{BACKEND}:3")

    # In an incident: only the cluster, no deploy variable, no template.
    done = run_cli("rollback", "backend", "--wait", "5", env=cli_env({"ECS_CLUSTER": "sbcntr-dev"}))
    assert done.returncode == 0, done.stderr
    assert f"{BACKEND}: revision 1, image " in done.stdout
    assert f"skipped {BACKEND}:2: it never reached steady state" in done.stderr
    assert service()["taskDefinition"].endswith(f"{BACKEND}:1")

    again = run_cli("rollback", "backend", env=cli_env({"ECS_CLUSTER": "sbcntr-dev"}))
    assert again.returncode == 1
    assert "no earlier revision" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_rollback_refuses_when_no_earlier_revision_ran(stuck: dict[str, str]) -> None:
    deploy(stuck, wait=0)
    deploy(stuck, wait=0)
    with pytest.raises(DeployError, match="no earlier revision of sbcntr-backend reached"):
        ecs.rollback("sbcntr-dev", "backend", wait_seconds=0)
    assert service()["taskDefinition"].endswith(f"{BACKEND}:2")


# --- 2. a deploy keeps the running capacity


def scalable_target() -> tuple[int, int]:
    found = boto3.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="ecs", ResourceIds=[f"service/sbcntr-dev/{BACKEND}"]
    )["ScalableTargets"][0]
    return found["MinCapacity"], found["MaxCapacity"]


def test_deploy_keeps_desired_count_and_scalable_target_unless_asked(
    steady: dict[str, str],
) -> None:
    deploy(steady)
    assert (service()["desiredCount"], scalable_target()) == (2, (2, 6))
    aas = boto3.client("application-autoscaling")
    where = {
        "ServiceNamespace": "ecs",
        "ResourceId": f"service/sbcntr-dev/{BACKEND}",
        "ScalableDimension": "ecs:service:DesiredCount",
    }

    # Target tracking scaled out under load: a deploy must not halve it.
    boto3.client("ecs").update_service(cluster="sbcntr-dev", service=BACKEND, desiredCount=4)
    deploy(steady)
    assert (service()["desiredCount"], scalable_target()) == (4, (2, 6))

    # Outside hours the schedule set 0/0: a deploy must not restart the service.
    aas.register_scalable_target(**where, MinCapacity=0, MaxCapacity=0)
    boto3.client("ecs").update_service(cluster="sbcntr-dev", service=BACKEND, desiredCount=0)
    result = deploy(steady)
    assert (service()["desiredCount"], scalable_target()) == (0, (0, 0))
    assert any("keep scalable target" in note for note in result.notes)

    # Asked explicitly.
    deploy(steady, apply_capacity=True, desired_count=3)
    assert (service()["desiredCount"], scalable_target()) == (3, (2, 6))


# --- 3. a failed deployment says why, apart from a timeout


def play_circuit_breaker(rev: str, back: str, reason: str) -> threading.Thread:
    """Do what ECS does when tasks of ``rev`` cannot start: stop them, roll back."""
    client = boto3.client("ecs")

    def act() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not service()["taskDefinition"].endswith(rev):
            time.sleep(0.05)
        network = service()["networkConfiguration"]
        for _ in range(2):
            task = client.run_task(
                cluster="sbcntr-dev",
                taskDefinition=rev,
                launchType="FARGATE",
                networkConfiguration=network,
                startedBy="ecs-svc/1234567890",
            )["tasks"][0]
            client.stop_task(cluster="sbcntr-dev", task=task["taskArn"], reason=reason)
        client.update_service(
            cluster="sbcntr-dev", service=BACKEND, taskDefinition=f"{TASK_DEFINITIONS}/{back}"
        )

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread


def test_a_rolled_back_deployment_reports_the_reason_and_exits_apart_from_a_timeout(
    stuck: dict[str, str], tmp_path: Path
) -> None:
    # moto's RunTask needs a memory figure on every container (Fargate does
    # not: the task's memory is enough); the copy gives the app one.
    taskdefs = tmp_path / "taskdefs"
    shutil.copytree(TASKDEFS, taskdefs)
    td = taskdefs / "backend" / "task-def.json"
    td.write_text(
        td.read_text().replace(
            '"essential": true,', '"essential": true, "memoryReservation": 256,', 1
        )
    )
    ecs.deploy(ecs.render("backend", stuck, taskdefs), 0)
    aas = boto3.client("application-autoscaling")
    aas.deregister_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=f"service/sbcntr-dev/{BACKEND}",
        ScalableDimension="ecs:service:DesiredCount",
    )
    pull_error = (
        "CannotPullContainerError: pull image manifest has been retried 5 time(s): "
        "failed to resolve ref sbcntr-backend:0a1b2c3: not found"
    )
    actor = play_circuit_breaker(f"{BACKEND}:2", f"{BACKEND}:1", pull_error)
    failed = run_cli(
        "deploy", "backend", "--dir", str(taskdefs), "--wait", "60", env=cli_env(stuck)
    )
    actor.join(timeout=10)
    assert failed.returncode == 3, failed.stderr
    line = failed.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert f"deployment of {BACKEND}:2 failed" in line
    assert f"went back to {BACKEND}:1" in line
    assert f"{pull_error} (x2)" in line
    assert "scaling not applied" in line
    assert not aas.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]

    timed_out = run_cli(
        "deploy", "backend", "--dir", str(taskdefs), "--wait", "1", env=cli_env(stuck)
    )
    assert timed_out.returncode == 4, timed_out.stderr
    assert "not steady after 1 s" in timed_out.stderr
    assert "scaling not applied" in timed_out.stderr
    assert len(timed_out.stderr.strip().splitlines()) == 1


def test_verdict_of_a_circuit_breaker_rollback_as_ecs_reports_it() -> None:
    """moto never marks a deployment FAILED; this is DescribeServices' shape
    after a circuit breaker rollback (Amazon ECS Developer Guide, "How the
    Amazon ECS deployment circuit breaker detects failures")."""
    rev1 = "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/sbcntr-backend:1"
    rev2 = rev1.replace(":1", ":2")
    described = {
        "taskDefinition": rev1,
        "deployments": [
            {"status": "PRIMARY", "taskDefinition": rev1, "rolloutState": "IN_PROGRESS"},
            {
                "status": "ACTIVE",
                "taskDefinition": rev2,
                "rolloutState": "FAILED",
                "rolloutStateReason": "ECS deployment circuit breaker: tasks failed to start.",
            },
        ],
    }
    assert ecs.verdict(described, rev2) == (
        "ECS deployment circuit breaker: tasks failed to start. (rolled back to sbcntr-backend:1)"
    )
    assert ecs.verdict(described, rev1) == ""


# --- 4. scaling reconciled with scaling.json


def scheduled_actions() -> list[str]:
    found = boto3.client("application-autoscaling").describe_scheduled_actions(
        ServiceNamespace="ecs", ResourceId=f"service/sbcntr-dev/{BACKEND}"
    )["ScheduledActions"]
    return sorted(a["ScheduledActionName"] for a in found)


def policies() -> list[str]:
    found = boto3.client("application-autoscaling").describe_scaling_policies(
        ServiceNamespace="ecs", ResourceId=f"service/sbcntr-dev/{BACKEND}"
    )["ScalingPolicies"]
    return sorted(p["PolicyName"] for p in found)


def test_scaling_drops_what_scaling_json_no_longer_holds_after_a_dry_run(
    steady: dict[str, str], tmp_path: Path
) -> None:
    deploy({**steady, "SCALE_TO_ZERO_OUTSIDE_HOURS": "true"})
    schedule = [f"{BACKEND}-evening-stop", f"{BACKEND}-morning-start"]
    assert scheduled_actions() == schedule
    assert policies() == [f"{BACKEND}-cpu", f"{BACKEND}-requests"]

    off = {**steady, "SCALE_TO_ZERO_OUTSIDE_HOURS": "false"}
    listing = run_cli("deploy", "backend", "--dry-run", env=cli_env(off))
    assert listing.returncode == 0, listing.stderr
    for name in schedule:
        assert f"scaling: delete scheduled action {name}" in listing.stdout
    assert scheduled_actions() == schedule  # a dry run changes nothing

    deploy(off)
    assert scheduled_actions() == []
    assert ecs.diff(ecs.render("backend", off, TASKDEFS)) == ""  # nothing left to change
    on = {**steady, "SCALE_TO_ZERO_OUTSIDE_HOURS": "true"}
    assert ecs.diff(ecs.render("backend", on, TASKDEFS)).splitlines() == [
        f"scaling: put scheduled action {name}" for name in schedule
    ]

    trimmed = tmp_path / "taskdefs"
    shutil.copytree(TASKDEFS, trimmed)
    scaling_json = trimmed / "backend" / "scaling.json"
    text = scaling_json.read_text()
    start = text.index('    {\n      "PolicyName": "sbcntr-backend-requests"')
    end = text.index("  ],\n", start)
    scaling_json.write_text(text[:start].rstrip().rstrip(",") + "\n" + text[end:])
    diff = ecs.diff(ecs.render("backend", off, trimmed))
    assert f"scaling: delete scaling policy {BACKEND}-requests (not in scaling.json)" in diff
    ecs.deploy(ecs.render("backend", off, trimmed), 5)
    assert policies() == [f"{BACKEND}-cpu"]


def capacity() -> tuple[int, int]:
    (target,) = boto3.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="ecs", ResourceIds=[f"service/sbcntr-dev/{BACKEND}"]
    )["ScalableTargets"]
    return target["MinCapacity"], target["MaxCapacity"]


def set_capacity(low: int, high: int) -> None:
    boto3.client("application-autoscaling").register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=f"service/sbcntr-dev/{BACKEND}",
        ScalableDimension="ecs:service:DesiredCount",
        MinCapacity=low,
        MaxCapacity=high,
    )


def test_removing_the_schedule_at_night_starts_the_service_again(steady: dict[str, str]) -> None:
    """The reproduction: the evening action set 0/0, then a deploy turned the schedule off.

    Before, the deploy kept 0/0 and deleted the morning start too: the service
    stayed at zero tasks for good. Application Auto Scaling applies a scheduled
    action by setting the target's min/max (User Guide, "Scheduled scaling for
    Application Auto Scaling"), which is what the test does in its place.
    """
    deploy({**steady, "SCALE_TO_ZERO_OUTSIDE_HOURS": "true"})
    wanted = capacity()
    assert wanted[1] > 0
    set_capacity(0, 0)  # what sbcntr-backend-evening-stop does at 20:00
    off = {**steady, "SCALE_TO_ZERO_OUTSIDE_HOURS": "false"}
    result = deploy(off)
    assert scheduled_actions() == []
    assert capacity() == wanted
    restored = [note for note in result.notes if "register scalable target" in note]
    assert restored == [
        f"scaling: register scalable target service/sbcntr-dev/{BACKEND}: "
        f"min {wanted[0]}, max {wanted[1]} (back from 0/0 to scaling.json's: the schedule "
        "that set it is removed)"
    ]
    # Without a schedule, an operator's own min/max are kept as before.
    set_capacity(1, 3)
    deploy(off)
    assert capacity() == (1, 3)


# --- 5. every AWS failure is one line naming the call, the resource and the fix


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1, result.stderr
    assert "Traceback" not in line
    assert "fix:" in line
    return line


def test_aws_failures_are_one_line(steady: dict[str, str]) -> None:
    gone = run_cli("rollback", "backend", "--cluster", "sbcntr-nope", env=cli_env({}))
    assert gone.returncode == 1
    line = one_line(gone)
    assert "DescribeServices sbcntr-nope/sbcntr-backend: ClusterNotFoundException" in line
    assert "set ECS_CLUSTER to an existing one" in line

    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = run_cli(
        "rollback",
        "backend",
        env={
            **cli_env({"ECS_CLUSTER": "sbcntr-dev"}),
            "AWS_ENDPOINT_URL": closed,
            "AWS_MAX_ATTEMPTS": "1",
        },
    )
    line = one_line(unreachable)
    assert f"DescribeServices sbcntr-dev/sbcntr-backend: cannot reach {closed}" in line

    nobody = {
        "ECS_CLUSTER": "sbcntr-dev",
        "AWS_REGION": "ap-northeast-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }
    line = one_line(run_cli("rollback", "backend", env=nobody))
    assert "no AWS credentials" in line


def test_verify_checks_the_account_moto_does_not_enforce(stuck: dict[str, str]) -> None:
    """AWS refuses a capacity provider the cluster lacks (CreateService:
    "The specified capacity provider strategy cannot contain a capacity
    provider that is not associated with the cluster", Amazon ECS API
    Reference, CapacityProviderStrategyItem); ECS stops tasks whose image is
    not in ECR (CannotPullContainerError). moto enforces neither."""
    boto3.client("ecs").put_cluster_capacity_providers(
        cluster="sbcntr-dev", capacityProviders=[], defaultCapacityProviderStrategy=[]
    )
    spot = {**stuck, "CAPACITY_PROVIDER": "FARGATE_SPOT", "IMAGE_TAG": "notpushed"}
    result = run_cli("verify", "backend", env=cli_env(spot))
    assert result.returncode == 1
    assert "capacityProviderStrategy: FARGATE_SPOT is not attached to cluster sbcntr-dev" in (
        result.stderr
    )
    assert "sbcntr-backend:notpushed is not in ECR" in result.stderr
    assert "sbcntr-log-router:notpushed is not in ECR" in result.stderr
    assert "backend: 3 problems" in result.stdout

    # Roles, log groups and secrets RegisterTaskDefinition does not look up.
    boto3.client("iam").delete_role(RoleName="sbcntr-dev-backend-execution")
    boto3.client("logs").delete_log_group(logGroupName="/sbcntr/dev/xray-daemon")
    boto3.client("secretsmanager").delete_secret(
        SecretId=stuck["DB_SECRET_ARN"], ForceDeleteWithoutRecovery=True
    )
    result = run_cli("verify", "backend", env=cli_env(stuck))
    assert "executionRoleArn: role sbcntr-dev-backend-execution does not exist" in result.stderr
    assert "log group /sbcntr/dev/xray-daemon does not exist" in result.stderr
    assert f"secret {stuck['DB_SECRET_ARN']} does not exist" in result.stderr
    refused = run_cli("deploy", "backend", env=cli_env(spot))
    assert refused.returncode == 1
    assert revisions() == []  # nothing registered


def test_verify_and_deploy_refuse_rollback_alarms_that_do_not_exist(
    stuck: dict[str, str],
) -> None:
    """ECS watches deployment alarms by name (Amazon ECS Developer Guide, "How
    CloudWatch alarms detect Amazon ECS deployment failures"): an alarm that does
    not exist never goes to ALARM, so nothing would roll a bad release back."""
    boto3.client("cloudwatch").delete_alarms(AlarmNames=["sbcntr-dev-frontend-p99-latency"])
    result = run_cli("verify", "frontend", env=cli_env(stuck))
    assert result.returncode == 1
    assert (
        "deploymentConfiguration.alarms: alarm sbcntr-dev-frontend-p99-latency does not exist: "
        "deploy the monitoring stack"
    ) in result.stderr
    assert "frontend: 1 problem" in result.stdout
    assert run_cli("verify", "backend", env=cli_env(stuck)).returncode == 0
    refused = run_cli("deploy", "frontend", env=cli_env(stuck))
    assert refused.returncode == 1
    assert "sbcntr-dev-frontend-p99-latency does not exist" in refused.stderr


def test_a_revision_deployed_at_zero_tasks_is_no_rollback_target(stuck: dict[str, str]) -> None:
    """Scale-to-zero: a deployment to a service at 0 tasks reaches steady state
    (0 running of 0 desired) with nothing of the revision ever run. moto has no
    deployment history (the call fails): the tags decide, and the deploy says so."""
    # A deployment that starts with a rollback alarm in ALARM is not watched by
    # the alarms (AWS Copilot's manifest reference, deployment.rollback_alarms,
    # after the Amazon ECS Developer Guide's "How CloudWatch alarms detect
    # Amazon ECS deployment failures"): the deploy says so, and goes on.
    boto3.client("cloudwatch").set_alarm_state(
        AlarmName="sbcntr-dev-public-5xx-rate", StateValue="ALARM", StateReason="test"
    )
    done = run_cli("deploy", "frontend", "--desired-count", "0", "--wait", "5", env=cli_env(stuck))
    assert done.returncode == 0, done.stderr
    assert (
        "sbcntr-frontend: alarm sbcntr-dev-public-5xx-rate is in ALARM now: "
        "ECS will not roll this deployment back on its alarms"
    ) in done.stdout
    # The stages, as DescribeServices shows them when the history is unavailable.
    assert "sbcntr-frontend: ECS deployment history not readable" in done.stdout
    assert "sbcntr-frontend: rollout COMPLETED, 0/0 tasks" in done.stdout
    assert ecs.STEADY_TAG not in tags("sbcntr-frontend:1")
    for revision in (1, 2):
        assert deploy(stuck, wait=5, desired_count=0).revision == revision
        assert ecs.STEADY_TAG not in tags(f"{BACKEND}:{revision}")
    with pytest.raises(DeployError, match="no earlier revision of sbcntr-backend reached"):
        ecs.rollback("sbcntr-dev", "backend", wait_seconds=0)
    assert service()["taskDefinition"].endswith(f"{BACKEND}:2")


def test_verify_with_opentelemetry_checks_the_collectors_image_and_log_group(
    stuck: dict[str, str],
) -> None:
    """With ``TRACING_BACKEND=otel`` the task pulls the collector's image and logs to
    its group instead of the daemon's: verify looks those up (ECS would register the
    task definition and then fail to start its tasks)."""
    otel = {**stuck, "TRACING_BACKEND": "otel"}
    logs = boto3.client("logs")
    logs.delete_log_group(logGroupName="/sbcntr/dev/xray-daemon")  # not used by this variant
    passed = run_cli("verify", "backend", env=cli_env(otel))
    assert passed.returncode == 0, passed.stdout + passed.stderr

    boto3.client("ecr").batch_delete_image(
        repositoryName="sbcntr-otel-collector", imageIds=[{"imageTag": stuck["IMAGE_TAG"]}]
    )
    logs.delete_log_group(logGroupName="/sbcntr/dev/otel-collector")
    result = run_cli("verify", "backend", env=cli_env(otel))
    assert result.returncode == 1
    assert f"sbcntr-otel-collector:{stuck['IMAGE_TAG']} is not in ECR" in result.stderr
    assert "log group /sbcntr/dev/otel-collector does not exist" in result.stderr
    assert "backend: 2 problems" in result.stdout
