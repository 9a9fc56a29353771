"""The deploy follows ECS's own record of the deployment, and rollback reads it.

moto has neither ListServiceDeployments, DescribeServiceDeployments nor
DescribeServiceRevisions: the ECS answers here come from botocore's Stubber,
which checks every request and answer against the pinned API model, shaped as
AWS documents them (Amazon ECS API Reference: ListServiceDeployments,
DescribeServiceDeployments, DescribeServiceRevisions, ServiceDeployment,
ServiceDeploymentAlarms, DeploymentLifecycleHookDetail; Amazon ECS Developer
Guide, "View service history using Amazon ECS service deployments" and "Amazon
ECS service deployment lifecycle stages"). The same calls against moto, where
they fail, are in test_deploy_moto.py (the fallback on the tags).
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from sbcntrctl.__main__ import build_parser
from sbcntrctl.deploy import ecs, history, verify
from sbcntrctl.infra.stacks import DEPLOYMENT_SETTINGS, INFRA_DIR
from sbcntrctl.release import registry, rollout
from sbcntrctl.release.images import IMAGES
from tests.tools.deploy_support import (
    BLUE_GREEN_ENV,
    ENV,
    ROLLBACK_ALARMS,
    TASKDEFS,
    stubbed_client,
)

CLUSTER = "sbcntr-dev"
NAME = "sbcntr-backend"
ACCOUNT = "arn:aws:ecs:ap-northeast-1:123456789012"
TD = f"{ACCOUNT}:task-definition/{NAME}"
SERVICE_ARN = f"{ACCOUNT}:service/{CLUSTER}/{NAME}"
CLUSTER_ARN = f"{ACCOUNT}:cluster/{CLUSTER}"
HOOK = "arn:aws:lambda:ap-northeast-1:123456789012:function:sbcntr-dev-smoke-hook"
T0 = dt.datetime(2026, 12, 5, 1, 0, tzinfo=dt.UTC)


def deployment_arn(n: int) -> str:
    return f"{ACCOUNT}:service-deployment/{CLUSTER}/{NAME}/d{n}"


def revision_arn(n: int) -> str:
    return f"{ACCOUNT}:service-revision/{CLUSTER}/{NAME}/r{n}"


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """Every ECS call of the deploy code goes to one Stubber (no network)."""
    monkeypatch.setattr(ecs, "POLL_SECONDS", 0.0)
    with stubbed_client(monkeypatch, "ecs") as stubber:
        yield stubber


def service(revision: int, *, running: int = 2) -> dict[str, Any]:
    """DescribeServices: ``revision`` the one PRIMARY deployment, rolled out."""
    return {
        "services": [
            {
                "serviceName": NAME,
                "status": "ACTIVE",
                "taskDefinition": f"{TD}:{revision}",
                "deployments": [
                    {
                        "id": f"ecs-svc/{revision}",
                        "status": "PRIMARY",
                        "taskDefinition": f"{TD}:{revision}",
                        "desiredCount": running,
                        "runningCount": running,
                        "rolloutState": "COMPLETED",
                    }
                ],
            }
        ]
    }


def brief(n: int, status: str, minutes: int = 0) -> dict[str, Any]:
    return {
        "serviceDeploymentArn": deployment_arn(n),
        "serviceArn": SERVICE_ARN,
        "clusterArn": CLUSTER_ARN,
        "createdAt": T0 + dt.timedelta(minutes=minutes),
        "targetServiceRevisionArn": revision_arn(n),
        "status": status,
    }


def deployment(n: int, status: str, **fields: Any) -> dict[str, Any]:
    """A ServiceDeployment of revision ``n`` (its service revision r<n>)."""
    running = fields.pop("running", 2)
    return {
        "serviceDeploymentArn": deployment_arn(n),
        "serviceArn": SERVICE_ARN,
        "clusterArn": CLUSTER_ARN,
        "createdAt": T0,
        "targetServiceRevision": {
            "arn": revision_arn(n),
            "requestedTaskCount": 2,
            "runningTaskCount": running,
            "pendingTaskCount": 2 - running,
        },
        "status": status,
        **fields,
    }


def revision(n: int) -> dict[str, Any]:
    return {
        "serviceRevisions": [
            {"serviceRevisionArn": revision_arn(n), "taskDefinition": f"{TD}:{n}"}
        ],
        "failures": [],
    }


def expect_found(stubber: Stubber, first: dict[str, Any], n: int = 2) -> None:
    """The first poll: DescribeServices, then the deployment looked up in the history."""
    stubber.add_response(
        "describe_services", service(n - 1), {"cluster": CLUSTER, "services": [NAME]}
    )
    stubber.add_response(
        "list_service_deployments",
        {"serviceDeployments": [brief(n, first["status"])]},
        {"cluster": CLUSTER, "service": NAME, "createdAt": {"after": ANY}},
    )
    stubber.add_response(
        "describe_service_deployments",
        {"serviceDeployments": [first], "failures": []},
        {"serviceDeploymentArns": [deployment_arn(n)]},
    )
    stubber.add_response(
        "describe_service_revisions", revision(n), {"serviceRevisionArns": [revision_arn(n)]}
    )


def expect_poll(stubber: Stubber, then: dict[str, Any]) -> None:
    stubber.add_response("describe_services", service(2), {"cluster": CLUSTER, "services": [NAME]})
    stubber.add_response(
        "describe_service_deployments",
        {"serviceDeployments": [then], "failures": []},
        {"serviceDeploymentArns": [deployment_arn(2)]},
    )


def expect_no_stopped_tasks(stubber: Stubber) -> None:
    stubber.add_response(
        "list_tasks",
        {"taskArns": []},
        {"cluster": CLUSTER, "family": NAME, "desiredStatus": "STOPPED"},
    )


def expect_tagged_as_steady(stubber: Stubber, n: int) -> None:
    """Revision ``n`` ran: the deploy tags it as a rollback target."""
    stubber.add_response("list_tags_for_resource", {"tags": []}, {"resourceArn": f"{TD}:{n}"})
    stubber.add_response(
        "tag_resource",
        {},
        {"resourceArn": f"{TD}:{n}", "tags": [{"key": ecs.STEADY_TAG, "value": ANY}]},
    )


def expect_task_definition(stubber: Stubber, n: int) -> None:
    """DescribeTaskDefinition of revision ``n`` (the rollback's result names its image)."""
    stubber.add_response(
        "describe_task_definition",
        {
            "taskDefinition": {
                "taskDefinitionArn": f"{TD}:{n}",
                "revision": n,
                "containerDefinitions": [{"name": "backend", "image": "r/sbcntr-backend:abc"}],
            }
        },
        {"taskDefinition": f"{TD}:{n}"},
    )


def follow(lines: list[str]) -> None:
    ecs.wait(CLUSTER, NAME, f"{TD}:2", 60, progress=lines.append, since=T0)


# --- every path of a deployment as the operator sees it


def test_success_prints_each_stage_and_tags_the_revision_that_ran(stubbed: Stubber) -> None:
    expect_found(stubbed, deployment(2, "IN_PROGRESS", lifecycleStage="SCALE_UP", running=0))
    expect_poll(stubbed, deployment(2, "IN_PROGRESS", lifecycleStage="SCALE_UP", running=0))
    expect_poll(stubbed, deployment(2, "IN_PROGRESS", lifecycleStage="BAKE_TIME"))
    expect_poll(stubbed, deployment(2, "SUCCESSFUL", lifecycleStage="CLEAN_UP"))
    expect_tagged_as_steady(stubbed, 2)
    lines: list[str] = []
    follow(lines)
    # One line per change, none for the poll that saw nothing new.
    assert lines == [
        f"{NAME}: IN_PROGRESS, SCALE_UP, 0/2 tasks",
        f"{NAME}: IN_PROGRESS, BAKE_TIME, 2/2 tasks",
        f"{NAME}: SUCCESSFUL, CLEAN_UP, 2/2 tasks",
    ]


def test_alarm_rollback_is_reported_with_the_alarm_and_the_reason(stubbed: Stubber) -> None:
    alarms = {
        "status": "TRIGGERED",
        "alarmNames": ["sbcntr-dev-public-5xx-rate"],
        "triggeredAlarmNames": ["sbcntr-dev-public-5xx-rate"],
    }
    reason = (
        "Service deployment rolled back because the alarm sbcntr-dev-public-5xx-rate "
        "went into ALARM."
    )
    expect_found(stubbed, deployment(2, "IN_PROGRESS", lifecycleStage="BAKE_TIME"))
    expect_poll(
        stubbed,
        deployment(
            2,
            "ROLLBACK_IN_PROGRESS",
            lifecycleStage="SCALE_UP",
            alarms=alarms,
            statusReason=reason,
            rollback={"reason": reason, "startedAt": T0, "serviceRevisionArn": revision_arn(1)},
        ),
    )
    expect_poll(
        stubbed,
        deployment(2, "ROLLBACK_SUCCESSFUL", alarms=alarms, statusReason=reason, running=0),
    )
    expect_no_stopped_tasks(stubbed)
    lines: list[str] = []
    with pytest.raises(ecs.DeploymentFailedError) as failed:
        follow(lines)
    assert str(failed.value) == (
        f"{NAME}: deployment of {NAME}:2 rolled back by alarm sbcntr-dev-public-5xx-rate: {reason}"
    )
    assert lines[-2:] == [
        f"{NAME}: ROLLBACK_IN_PROGRESS, SCALE_UP, 2/2 tasks",
        f"{NAME}: ROLLBACK_SUCCESSFUL, 0/2 tasks",
    ]


def test_a_failed_lifecycle_hook_is_reported_naming_the_hook(stubbed: Stubber) -> None:
    hook = {
        "hookId": "h-1",
        "targetType": "AWS_LAMBDA",
        "targetArn": HOOK,
        "status": "FAILED",
        "timeoutAction": "ROLLBACK",
    }
    waiting = {**hook, "status": "IN_PROGRESS"}
    reason = "Service deployment rolled back because a lifecycle hook failed."
    expect_found(
        stubbed,
        deployment(
            2,
            "IN_PROGRESS",
            lifecycleStage="POST_TEST_TRAFFIC_SHIFT",
            lifecycleHookDetails=[waiting],
        ),
    )
    expect_poll(
        stubbed,
        deployment(
            2, "ROLLBACK_SUCCESSFUL", lifecycleHookDetails=[hook], statusReason=reason, running=0
        ),
    )
    expect_no_stopped_tasks(stubbed)
    lines: list[str] = []
    with pytest.raises(ecs.DeploymentFailedError, match="rolled back by lifecycle hook") as failed:
        follow(lines)
    assert "sbcntr-dev-smoke-hook (FAILED)" in str(failed.value)
    assert reason in str(failed.value)
    assert lines[0] == (
        f"{NAME}: IN_PROGRESS, POST_TEST_TRAFFIC_SHIFT, 2/2 tasks, "
        "hook sbcntr-dev-smoke-hook IN_PROGRESS"
    )


def test_a_circuit_breaker_stop_is_reported_with_the_failed_tasks(stubbed: Stubber) -> None:
    breaker = {"status": "TRIGGERED", "failureCount": 3, "threshold": 3}
    expect_found(
        stubbed,
        deployment(2, "ROLLBACK_SUCCESSFUL", deploymentCircuitBreaker=breaker, running=0),
    )
    expect_no_stopped_tasks(stubbed)
    with pytest.raises(ecs.DeploymentFailedError) as failed:
        follow([])
    assert str(failed.value) == (
        f"{NAME}: deployment of {NAME}:2 rolled back by the circuit breaker "
        "(3 failed tasks, threshold 3)"
    )


def test_a_failed_rollback_and_a_stop_are_told_apart() -> None:
    breaker = {"status": "TRIGGERED", "failureCount": 3, "threshold": 3}
    failed = deployment(2, "ROLLBACK_FAILED", deploymentCircuitBreaker=breaker)
    assert history.cause(failed).startswith(
        "could not be rolled back (ROLLBACK_FAILED) after being stopped by the circuit breaker"
    )
    stopped = deployment(2, "STOPPED", statusReason="Stopped by a user.")
    assert history.cause(stopped) == "stopped: Stopped by a user."


def test_a_rollback_still_running_when_the_wait_ends_is_a_failure_not_a_timeout(
    stubbed: Stubber,
) -> None:
    breaker = {"status": "TRIGGERED", "failureCount": 2, "threshold": 2}
    expect_found(stubbed, deployment(2, "ROLLBACK_IN_PROGRESS", deploymentCircuitBreaker=breaker))
    expect_no_stopped_tasks(stubbed)
    with pytest.raises(ecs.DeploymentFailedError) as failed:
        ecs.wait(CLUSTER, NAME, f"{TD}:2", 0.001, since=T0)
    assert "rolled back by the circuit breaker" in str(failed.value)
    assert "the rollback was still running after 0.001 s" in str(failed.value)


def test_a_deployment_that_succeeds_at_zero_tasks_is_no_rollback_target(stubbed: Stubber) -> None:
    # Scale-to-zero at night: the deployment succeeds with nothing run. No tag.
    expect_found(stubbed, deployment(2, "SUCCESSFUL", running=0))
    follow([])


# --- rollback reads ECS's deployment history


def expect_history(stubber: Stubber, kept: list[tuple[int, int]]) -> None:
    """ECS's history of successful deployments: (revision, tasks it ran), oldest first."""
    briefs = [brief(n, "SUCCESSFUL", minutes) for minutes, (n, _) in enumerate(kept)]
    stubber.add_response(
        "list_service_deployments",
        {"serviceDeployments": briefs[::-1]},
        {"cluster": CLUSTER, "service": NAME, "status": ["SUCCESSFUL"]},
    )
    newest = [n for n, _ in kept][::-1]
    stubber.add_response(
        "describe_service_deployments",
        {
            "serviceDeployments": [deployment(n, "SUCCESSFUL", running=ran) for n, ran in kept],
            "failures": [],
        },
        {"serviceDeploymentArns": [deployment_arn(n) for n in newest]},
    )
    stubber.add_response(
        "describe_service_revisions",
        {"serviceRevisions": [revision(n)["serviceRevisions"][0] for n in newest], "failures": []},
        {"serviceRevisionArns": [revision_arn(n) for n in newest]},
    )


def expect_nothing_ongoing(stubber: Stubber) -> None:
    """No deployment of the service is PENDING or IN_PROGRESS (nothing to stop)."""
    stubber.add_response(
        "list_service_deployments",
        {"serviceDeployments": []},
        {"cluster": CLUSTER, "service": NAME, "status": ["PENDING", "IN_PROGRESS"]},
    )


def expect_tags(stubber: Stubber, n: int, *, tagged: bool) -> None:
    tags = [{"key": ecs.STEADY_TAG, "value": "2026-12-01T00:00:00Z"}] if tagged else []
    stubber.add_response("list_tags_for_resource", {"tags": tags}, {"resourceArn": f"{TD}:{n}"})


@pytest.mark.parametrize(
    ("kept", "tagged", "note"),
    [
        # Revision 1 ran (2 tasks) and carries no tag: it was deployed another way.
        ([(1, 2), (2, 0), (3, 2)], [], "its deployments ran no task"),
        # Revision 1 is older than the history's 90 days; this tool tagged it.
        ([(2, 0), (3, 2)], [1], "its deployments ran no task"),
    ],
    ids=["from-the-history", "older-than-the-history-from-the-tag"],
)
def test_rollback_target_from_the_deployment_history(
    stubbed: Stubber, kept: list[tuple[int, int]], tagged: list[int], note: str
) -> None:
    """Revision 3 runs; revision 2 was deployed while the service ran 0 tasks
    (its deployment SUCCESSFUL, nothing run): it is no target, revision 1 is."""
    stubbed.add_response("describe_services", service(3), {"cluster": CLUSTER, "services": [NAME]})
    expect_nothing_ongoing(stubbed)
    expect_tags(stubbed, 3, tagged=True)
    stubbed.add_response(
        "list_task_definitions",
        {"taskDefinitionArns": [f"{TD}:3", f"{TD}:2", f"{TD}:1"]},
        {"familyPrefix": NAME, "status": "ACTIVE", "sort": "DESC"},
    )
    expect_history(stubbed, kept)
    expect_tags(stubbed, 2, tagged=False)
    if tagged:
        expect_tags(stubbed, 1, tagged=True)
    stubbed.add_response(
        "update_service", {}, {"cluster": CLUSTER, "service": NAME, "taskDefinition": f"{TD}:1"}
    )
    expect_task_definition(stubbed, 1)
    result = ecs.rollback(CLUSTER, "backend", wait_seconds=0)
    assert result.task_definition_arn == f"{TD}:1"
    assert result.notes == [f"skipped {NAME}:2: {note}"]


# --- the definitions: alarm rollback on every service


def monitoring_alarms() -> set[str]:
    """The AlarmName of every alarm of infra/monitoring.yml, for dev."""
    text = (INFRA_DIR / "monitoring.yml").read_text()
    return {
        name.replace("${EnvName}", "dev") for name in re.findall(r'AlarmName: !Sub "([^"]+)"', text)
    }


@pytest.mark.parametrize("name", ["frontend", "backend"])
def test_every_service_rolls_back_on_the_alarms_of_user_facing_errors(name: str) -> None:
    sd = ecs.render(name, ENV, TASKDEFS).service_definition
    alarms = sd["deploymentConfiguration"]["alarms"]
    assert alarms["enable"] is True
    assert alarms["rollback"] is True
    assert "sbcntr-dev-public-5xx-rate" in alarms["alarmNames"]
    assert set(alarms["alarmNames"]) <= monitoring_alarms()
    assert {f"sbcntr-dev-{a}" for a in ROLLBACK_ALARMS} <= monitoring_alarms()
    if name == "frontend":
        assert "sbcntr-dev-frontend-p99-latency" in alarms["alarmNames"]
    assert verify.service_definition(sd) == []
    # UpdateService takes the same deploymentConfiguration (deploy updates with it).
    update = {k: sd[k] for k in ecs.UPDATABLE if k in sd}
    params = {"cluster": CLUSTER, "service": NAME, **update}
    assert verify._model_problems("UpdateService", params) == []


@pytest.mark.parametrize("field", ["enable", "rollback", "alarmNames"])
def test_verify_refuses_a_service_without_alarm_rollback(field: str) -> None:
    sd = copy.deepcopy(ecs.render("frontend", ENV, TASKDEFS).service_definition)
    alarms = sd["deploymentConfiguration"]["alarms"]
    alarms[field] = [] if field == "alarmNames" else False
    assert [p.field for p in verify.service_definition(sd)] == ["deploymentConfiguration.alarms"]


# --- release deploy passes the stages and the verdict on


def test_release_deploy_prints_the_stages_and_fails_on_a_rollback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The deploy itself is the one tested above; here, what the release step
    shows of it: each stage as it comes, then the verdict and a non-zero exit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    records = []
    for name, image in IMAGES.items():
        record = tmp_path / f"digest-{name}.json"
        registry.write_record(record, image, commit, "sha256:" + "ab" * 32)
        records.append(str(record))
    monkeypatch.setattr(rollout, "deployment_env", lambda environment: dict(ENV))
    monkeypatch.setattr(rollout.migrate, "before_update", lambda rendered, wait: None)
    seen: list[str] = []

    def deploy(rendered: ecs.Rendered, wait: float, **options: Any) -> ecs.Result:
        seen.append(rendered.service)
        progress = options["progress"]
        progress(f"{rendered.service_name}: IN_PROGRESS, SCALE_UP, 0/2 tasks")
        if rendered.service == "frontend":
            progress(f"{rendered.service_name}: ROLLBACK_SUCCESSFUL, 0/2 tasks")
            msg = "rolled back by alarm sbcntr-dev-public-5xx-rate"
            raise ecs.DeploymentFailedError(msg)
        return ecs.Result(f"{TD}:7", 7, "r/sbcntr-backend@sha256:ab")

    monkeypatch.setattr(rollout.ecs, "deploy", deploy)
    args = build_parser().parse_args(
        ["release", "deploy", "dev", "--commit", commit, "--digests", *records]
    )
    assert args.handler(args) != 0
    out, err = capsys.readouterr()
    assert seen == ["backend", "frontend"]
    assert out.splitlines() == [
        "sbcntr-backend: IN_PROGRESS, SCALE_UP, 0/2 tasks",
        "dev sbcntr-backend: revision 7, r/sbcntr-backend@sha256:ab",
        "sbcntr-frontend: IN_PROGRESS, SCALE_UP, 0/2 tasks",
        "sbcntr-frontend: ROLLBACK_SUCCESSFUL, 0/2 tasks",
    ]
    assert "rolled back by alarm sbcntr-dev-public-5xx-rate" in err


# --- blue/green and canary: test traffic, hook, production traffic, bake time

HOOK_RUNNING = {
    "hookId": "h-1",
    "targetType": "AWS_LAMBDA",
    "targetArn": HOOK,
    "status": "IN_PROGRESS",
    "timeoutAction": "ROLLBACK",
}


def green(
    n: int, status: str, stage: str, test: float, production: float, **fields: Any
) -> dict[str, Any]:
    """A blue/green ServiceDeployment of revision ``n`` with its traffic weights."""
    found = deployment(n, status, lifecycleStage=stage, **fields)
    found["targetServiceRevision"].update(
        requestedTestTrafficWeight=test, requestedProductionTrafficWeight=production
    )
    return found


def test_a_blue_green_success_prints_each_stage_in_order(stubbed: Stubber) -> None:
    expect_found(stubbed, green(2, "IN_PROGRESS", "SCALE_UP", 0, 0, running=0))
    expect_poll(stubbed, green(2, "IN_PROGRESS", "TEST_TRAFFIC_SHIFT", 100, 0))
    expect_poll(
        stubbed,
        green(
            2, "IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT", 100, 0, lifecycleHookDetails=[HOOK_RUNNING]
        ),
    )
    succeeded = {**HOOK_RUNNING, "status": "SUCCEEDED"}
    expect_poll(
        stubbed,
        green(
            2, "IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT", 100, 100, lifecycleHookDetails=[succeeded]
        ),
    )
    expect_poll(stubbed, green(2, "IN_PROGRESS", "BAKE_TIME", 100, 100))
    expect_poll(stubbed, green(2, "SUCCESSFUL", "CLEAN_UP", 100, 100))
    expect_tagged_as_steady(stubbed, 2)
    lines: list[str] = []
    follow(lines)
    assert lines == [
        f"{NAME}: IN_PROGRESS, SCALE_UP, 0/2 tasks, 0% test traffic, 0% production traffic",
        f"{NAME}: IN_PROGRESS, TEST_TRAFFIC_SHIFT, 2/2 tasks, 100% test traffic, "
        "0% production traffic",
        f"{NAME}: IN_PROGRESS, POST_TEST_TRAFFIC_SHIFT, 2/2 tasks, 100% test traffic, "
        "0% production traffic, hook sbcntr-dev-smoke-hook IN_PROGRESS",
        f"{NAME}: IN_PROGRESS, PRODUCTION_TRAFFIC_SHIFT, 2/2 tasks, 100% test traffic, "
        "100% production traffic, hook sbcntr-dev-smoke-hook SUCCEEDED",
        f"{NAME}: IN_PROGRESS, BAKE_TIME, 2/2 tasks, 100% test traffic, 100% production traffic",
        f"{NAME}: SUCCESSFUL, CLEAN_UP, 2/2 tasks, 100% test traffic, 100% production traffic",
    ]


def test_a_hook_failure_names_the_stage_it_failed_at(stubbed: Stubber) -> None:
    """Seen while following: the stage the deployment was at while the hook ran."""
    failed = {**HOOK_RUNNING, "status": "FAILED"}
    reason = "Service deployment rolled back because a lifecycle hook failed."
    expect_found(
        stubbed,
        green(
            2, "IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT", 100, 0, lifecycleHookDetails=[HOOK_RUNNING]
        ),
    )
    # Rolling back, the deployment's stage is the rollback's own: not the hook's.
    expect_poll(
        stubbed,
        green(
            2,
            "ROLLBACK_IN_PROGRESS",
            "TEST_TRAFFIC_SHIFT",
            0,
            0,
            lifecycleHookDetails=[failed],
            statusReason=reason,
        ),
    )
    expect_poll(
        stubbed,
        deployment(
            2, "ROLLBACK_SUCCESSFUL", lifecycleHookDetails=[failed], statusReason=reason, running=0
        ),
    )
    expect_no_stopped_tasks(stubbed)
    with pytest.raises(ecs.DeploymentFailedError) as stopped:
        follow([])
    assert str(stopped.value) == (
        f"{NAME}: deployment of {NAME}:2 rolled back by lifecycle hook sbcntr-dev-smoke-hook "
        f"(FAILED) at POST_TEST_TRAFFIC_SHIFT: {reason}"
    )


def test_a_hook_failure_not_seen_running_takes_the_stage_from_the_configuration(
    stubbed: Stubber,
) -> None:
    """A deploy that found the deployment already rolled back (or --wait began late):
    the hook's one configured stage (ServiceDeployment.deploymentConfiguration)."""
    failed = {**HOOK_RUNNING, "status": "FAILED"}
    configuration = {
        "strategy": "BLUE_GREEN",
        "bakeTimeInMinutes": 10,
        "lifecycleHooks": [
            {
                "hookTargetArn": HOOK,
                "roleArn": "arn:aws:iam::123456789012:role/sbcntr-dev-deploy-hook-invoke",
                "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
            }
        ],
    }
    expect_found(
        stubbed,
        deployment(
            2,
            "ROLLBACK_SUCCESSFUL",
            lifecycleHookDetails=[failed],
            deploymentConfiguration=configuration,
            running=0,
        ),
    )
    expect_no_stopped_tasks(stubbed)
    with pytest.raises(ecs.DeploymentFailedError, match="FAILED\\) at POST_TEST_TRAFFIC_SHIFT"):
        follow([])


def test_an_alarm_during_the_bake_time_is_reported_as_the_alarm_rollback(
    stubbed: Stubber,
) -> None:
    """Production traffic reached the new revision; the alarm fires in the bake time
    and ECS sends the traffic back to the old revision, still running."""
    alarms = {
        "status": "TRIGGERED",
        "alarmNames": ["sbcntr-dev-public-5xx-rate", "sbcntr-dev-frontend-p99-latency"],
        "triggeredAlarmNames": ["sbcntr-dev-frontend-p99-latency"],
    }
    reason = "Alarm sbcntr-dev-frontend-p99-latency went into ALARM during the bake time."
    expect_found(stubbed, green(2, "IN_PROGRESS", "BAKE_TIME", 100, 100))
    expect_poll(
        stubbed,
        green(2, "ROLLBACK_SUCCESSFUL", "CLEAN_UP", 0, 0, alarms=alarms, statusReason=reason),
    )
    expect_no_stopped_tasks(stubbed)
    lines: list[str] = []
    with pytest.raises(ecs.DeploymentFailedError) as stopped:
        follow(lines)
    assert str(stopped.value) == (
        f"{NAME}: deployment of {NAME}:2 rolled back by alarm "
        f"sbcntr-dev-frontend-p99-latency: {reason}"
    )
    assert lines[0].startswith(f"{NAME}: IN_PROGRESS, BAKE_TIME")


def test_rollback_during_the_bake_time_stops_the_deployment_with_ecs_rollback(
    stubbed: Stubber,
) -> None:
    """Amazon ECS Developer Guide, "Stopping Amazon ECS service deployments": an
    IN_PROGRESS deployment stopped with ROLLBACK goes back to the revision it replaces
    (here revision 1, still running through the bake time); no new deployment."""
    stubbed.add_response("describe_services", service(2), {"cluster": CLUSTER, "services": [NAME]})
    stubbed.add_response(
        "list_service_deployments",
        {"serviceDeployments": [brief(2, "IN_PROGRESS")]},
        {"cluster": CLUSTER, "service": NAME, "status": ["PENDING", "IN_PROGRESS"]},
    )
    baking = green(2, "IN_PROGRESS", "BAKE_TIME", 100, 100)
    baking["sourceServiceRevisions"] = [
        {"arn": revision_arn(1), "requestedTaskCount": 2, "runningTaskCount": 2}
    ]
    stubbed.add_response(
        "describe_service_deployments",
        {"serviceDeployments": [baking], "failures": []},
        {"serviceDeploymentArns": [deployment_arn(2)]},
    )
    stubbed.add_response(
        "describe_service_revisions",
        {
            "serviceRevisions": [
                revision(2)["serviceRevisions"][0],
                revision(1)["serviceRevisions"][0],
            ],
            "failures": [],
        },
        {"serviceRevisionArns": [revision_arn(2), revision_arn(1)]},
    )
    stubbed.add_response(
        "stop_service_deployment",
        {"serviceDeploymentArn": deployment_arn(2)},
        {"serviceDeploymentArn": deployment_arn(2), "stopType": "ROLLBACK"},
    )
    for then in (
        green(2, "ROLLBACK_IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT", 0, 0),
        green(2, "ROLLBACK_SUCCESSFUL", "CLEAN_UP", 0, 0, running=0),
    ):
        stubbed.add_response(
            "describe_service_deployments",
            {"serviceDeployments": [then], "failures": []},
            {"serviceDeploymentArns": [deployment_arn(2)]},
        )
    expect_task_definition(stubbed, 1)
    lines: list[str] = []
    result = ecs.rollback(CLUSTER, "backend", progress=lines.append)
    assert result.task_definition_arn == f"{TD}:1"
    assert result.notes == [f"stopped the deployment of {NAME}:2 at BAKE_TIME: ECS rolled it back"]
    assert lines == [
        f"{NAME}: stopped the deployment of {NAME}:2 at BAKE_TIME, rolling back",
        f"{NAME}: ROLLBACK_IN_PROGRESS, PRODUCTION_TRAFFIC_SHIFT, 2/2 tasks, 0% test traffic, "
        "0% production traffic",
        f"{NAME}: ROLLBACK_SUCCESSFUL, CLEAN_UP, 0/2 tasks, 0% test traffic, 0% production traffic",
    ]


def test_release_deploy_waits_through_the_bake_time_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """prod's BLUE_GREEN with its 10-minute bake time and the hook's 10-minute timeout:
    each service's deploy may take 900 + 600 + 600 s before it is called timed out."""
    monkeypatch.setattr(
        rollout,
        "deployment_env",
        lambda environment: {**BLUE_GREEN_ENV, **DEPLOYMENT_SETTINGS["prod"]},
    )
    monkeypatch.setattr(rollout.migrate, "before_update", lambda rendered, wait: None)
    waits: dict[str, float] = {}

    def deploy(rendered: ecs.Rendered, wait: float, **options: Any) -> ecs.Result:
        waits[rendered.service] = wait
        return ecs.Result(f"{TD}:7", 7, "r/sbcntr-backend@sha256:ab")

    monkeypatch.setattr(rollout.ecs, "deploy", deploy)
    commit = "0123456789abcdef0123456789abcdef01234567"
    digests = {image.repository: "sha256:" + "ab" * 32 for image in IMAGES.values()}
    list(rollout.deploy("prod", commit, digests, None))
    assert waits == {"backend": 2100, "frontend": 2100}
    list(rollout.deploy("prod", commit, digests, 60))
    assert waits == {"backend": 60, "frontend": 60}


def test_a_rollback_that_cannot_read_the_revisions_is_one_error_naming_the_call(
    stubbed: Stubber,
) -> None:
    stubbed.add_response("describe_services", service(2), {"cluster": CLUSTER, "services": [NAME]})
    stubbed.add_response(
        "list_service_deployments",
        {"serviceDeployments": [brief(2, "IN_PROGRESS")]},
        {"cluster": CLUSTER, "service": NAME, "status": ["PENDING", "IN_PROGRESS"]},
    )
    stubbed.add_response(
        "describe_service_deployments",
        {"serviceDeployments": [green(2, "IN_PROGRESS", "BAKE_TIME", 100, 100)], "failures": []},
        {"serviceDeploymentArns": [deployment_arn(2)]},
    )
    stubbed.add_client_error(
        "describe_service_revisions", "AccessDeniedException", "not authorized", 400
    )
    with pytest.raises(ecs.DeployError, match="DescribeServiceRevisions gave AccessDenied"):
        ecs.rollback(CLUSTER, "backend")
