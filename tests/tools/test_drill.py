"""``sbcntrctl drill``: the experiment found by its tag, refused when the tasks cannot
take it, started, followed to its end, and the services' figures read from CloudWatch.

FIS and ECS are moto's (experiment templates, StartExperiment, GetExperiment,
StopExperiment; services and task definitions); CloudWatch's metrics too, with
the percentiles and Application Auto Scaling's activities answered through
botocore's Stubber as in tests/loadtest/test_cloudwatch.py. What moto cannot do
(an alarm stopping an experiment; ``enableFaultInjection`` on a task
definition; service events) comes from the Stubber, in the shapes of the FIS
and ECS API references (GetExperiment: ``state.status`` ``stopped``;
DescribeTaskDefinition: ``enableFaultInjection``; DescribeServices:
``events[].message``).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from sbcntrctl.__main__ import build_parser
from sbcntrctl.drill import cli as drill_cli
from sbcntrctl.drill import experiments, report
from sbcntrctl.loadtest import cloudwatch
from tests.infra.cfn import template
from tests.loadtest.test_cloudwatch import Percentiles
from tests.tools.deploy_support import aws_env
from tests.tools.test_deploy import moto_server

__all__ = ["moto_server"]

LB = "app/sbcntr-dev-public/0123456789abcdef"
TG = "targetgroup/sbcntr-dev-frontend/fedcba9876543210"
ROLE = "arn:aws:iam::123456789012:role/sbcntr-dev-drills"


def test_the_drills_are_the_experiment_templates_of_drills_yml() -> None:
    found = {}
    for experiment in template("drills")["Resources"].values():
        if experiment["Type"] != "AWS::FIS::ExperimentTemplate":
            continue
        name = experiment["Properties"]["Tags"]["Name"]["Fn::Sub"].removeprefix(
            "sbcntr-${EnvName}-"
        )
        [action] = experiment["Properties"]["Actions"].values()
        [target] = experiment["Properties"]["Targets"].values()
        service = target.get("Parameters", {}).get("service")
        found[name] = (service.removeprefix("sbcntr-") if service else None, action["ActionId"])
    assert found == experiments.DRILLS


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The dev environment on moto: services, the drill templates, the edge exports."""
    for key, value in aws_env(moto_server).items():
        monkeypatch.setenv(key, value)
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName="sbcntr-dev")
    for service in cloudwatch.SERVICES:
        containers = [{"name": service, "image": "x", "essential": True}]
        if service == "backend":  # the FIS sidecar, as the FIS user guide shows it
            containers.append(
                {
                    "name": "amazon-ssm-agent",
                    "image": "public.ecr.aws/amazon-ssm-agent/amazon-ssm-agent:latest",
                    "essential": False,
                    "environment": [
                        {
                            "name": "MANAGED_INSTANCE_ROLE_NAME",
                            "value": "sbcntr-dev-fis-managed-instance",
                        }
                    ],
                }
            )
        td = ecs.register_task_definition(
            family=f"sbcntr-{service}", cpu="512", memory="1024", containerDefinitions=containers
        )["taskDefinition"]["taskDefinitionArn"]
        ecs.create_service(
            cluster="sbcntr-dev", serviceName=f"sbcntr-{service}", taskDefinition=td, desiredCount=2
        )
    fis = boto3.client("fis")
    for name, (service, action) in experiments.DRILLS.items():
        if service is None:
            continue
        fis.create_experiment_template(
            clientToken=name,
            description=name,
            roleArn=ROLE,
            stopConditions=[
                {
                    "source": "aws:cloudwatch:alarm",
                    "value": "arn:aws:cloudwatch:ap-northeast-1:123456789012:alarm:"
                    "sbcntr-dev-public-5xx-rate",
                }
            ],
            targets={
                "Tasks": {
                    "resourceType": "aws:ecs:task",
                    "parameters": {"cluster": "sbcntr-dev", "service": f"sbcntr-{service}"},
                    "selectionMode": "PERCENT(50)",
                }
            },
            actions={"Act": {"actionId": action, "targets": {"Tasks": "Tasks"}}},
            tags={"Name": f"sbcntr-dev-{name}"},
        )
    exports = {
        "Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {
            "Lb": {"Value": LB, "Export": {"Name": "sbcntr-dev-PublicAlbFullName"}},
            "Tg": {"Value": TG, "Export": {"Name": "sbcntr-dev-FrontendTargetGroupFullName"}},
        },
    }
    boto3.client("cloudformation").create_stack(
        StackName="sbcntr-dev-edge", TemplateBody=json.dumps(exports)
    )
    return {"ecs": ecs, "fis": fis}


def scaling_for(start: dt.datetime) -> Any:
    """Application Auto Scaling (absent from moto): the frontend scaled out once."""
    client = boto3.client("application-autoscaling")
    stubber = Stubber(client)
    for service in cloudwatch.SERVICES:
        activities = (
            [
                {
                    "ActivityId": "frontend-1",
                    "ServiceNamespace": "ecs",
                    "ResourceId": "service/sbcntr-dev/sbcntr-frontend",
                    "ScalableDimension": "ecs:service:DesiredCount",
                    "Description": "Setting desired count to 3.",
                    "Cause": "monitor alarm TargetTracking in state ALARM triggered policy cpu",
                    "StartTime": start,
                    "EndTime": start,
                    "StatusCode": "Successful",
                }
            ]
            if service == "frontend"
            else []
        )
        stubber.add_response(
            "describe_scaling_activities",
            {"ScalingActivities": activities},
            {"ServiceNamespace": "ecs", "ResourceId": f"service/sbcntr-dev/sbcntr-{service}"},
        )
    stubber.activate()
    return client


def test_a_drill_is_refused_runs_reports_and_stops_on_ctrl_c(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused before anything starts when the tasks cannot take the drill.
    args = build_parser().parse_args(["drill", "dev", "cpu-stress-frontend", "--poll", "0"])
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "sbcntr-frontend has no amazon-ssm-agent sidecar container" in err
    assert aws["fis"].list_experiments()["experiments"] == []
    assert experiments.preflight(aws["ecs"], "dev", "cpu-stress-backend") == []
    assert experiments.preflight(aws["ecs"], "dev", "stop-frontend-tasks") == []
    # moto keeps no enableFaultInjection: DescribeTaskDefinition as ECS answers without it.
    problems = experiments.preflight(aws["ecs"], "dev", "network-latency-backend")
    assert problems == ["sbcntr-backend does not set enableFaultInjection (Fargate)"]

    # Then a drill that runs.
    metrics = boto3.client("cloudwatch")
    logs = boto3.client("logs")
    for service in cloudwatch.SERVICES:
        logs.create_log_group(logGroupName=f"/sbcntr/dev/{service}")

    def settle(_: float) -> None:
        """While the command waits, the window's metrics land."""
        [summary] = aws["fis"].list_experiments()["experiments"]
        experiment = aws["fis"].get_experiment(id=summary["id"])["experiment"]
        # moto runs the experiment in an instant: the report's window is then the
        # baseline minute before it (periods of 60 s start at the window's start).
        during = experiment["startTime"] - dt.timedelta(seconds=30)
        lb = [{"Name": "LoadBalancer", "Value": LB}]
        metrics.put_metric_data(
            Namespace="AWS/ApplicationELB",
            MetricData=[
                {"MetricName": "RequestCount", "Dimensions": lb, "Value": 600, "Timestamp": during},
                {
                    "MetricName": "HTTPCode_ELB_5XX_Count",
                    "Dimensions": lb,
                    "Value": 3,
                    "Timestamp": during,
                },
            ],
        )
        for service, tasks in (("frontend", 3), ("backend", 1)):
            dims = [
                {"Name": "ClusterName", "Value": "sbcntr-dev"},
                {"Name": "ServiceName", "Value": f"sbcntr-{service}"},
            ]
            metrics.put_metric_data(
                Namespace="ECS/ContainerInsights",
                MetricData=[
                    {
                        "MetricName": "RunningTaskCount",
                        "Dimensions": dims,
                        "Value": tasks,
                        "Timestamp": during,
                    }
                ],
            )
        scaling["client"] = scaling_for(during)

    scaling: dict[str, Any] = {}
    real_clients = drill_cli.clients

    def clients() -> dict[str, Any]:
        found = real_clients()
        found["cloudwatch"] = Percentiles(found["cloudwatch"])

        class LateScaling:
            def __getattr__(self, name: str) -> Any:
                return getattr(scaling["client"], name)

        found["application-autoscaling"] = LateScaling()
        return found

    monkeypatch.setattr(drill_cli, "clients", clients)
    monkeypatch.setattr(drill_cli, "settle", settle)
    args = build_parser().parse_args(
        ["drill", "dev", "stop-backend-tasks", "--poll", "0", "--settle", "0"]
    )
    code = args.handler(args)
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, out + captured.err
    assert "experiment: completed (Experiment completed)" in out
    assert "Act: running" in out
    assert "requests: 600 at the public load balancer, 3 5xx (0.50%)" in out
    assert "latency (frontend, EMF): p50 41 / p95 180 / p99 420 ms" in out
    assert "frontend: running 3-3 tasks" in out
    assert "1 scaling activities (desired 3)" in out
    assert "backend: running 1-1 tasks" in out
    assert out.rstrip().endswith("completed: no stop condition fired")
    [started] = aws["fis"].list_experiments()["experiments"]
    assert started["tags"] == {"StartedBy": "sbcntrctl-drill", "Drill": "stop-backend-tasks"}

    # Ctrl-C stops an experiment and follows it to stopped.
    template_id = experiments.template_id(aws["fis"], "dev", "stop-frontend-tasks")
    experiment_id = experiments.start(aws["fis"], template_id, "stop-frontend-tasks")
    said: list[str] = []
    interrupted: list[bool] = []

    def sleep(_: float) -> None:
        if not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt

    outcome = experiments.follow(aws["fis"], experiment_id, 0, said.append, sleep)
    assert outcome.status == "stopped"
    assert outcome.stopped_by_us
    assert not outcome.stopped_by_alarm
    assert "stopping the experiment (Ctrl-C)" in said


def test_the_network_drill_passes_with_fault_injection_enabled() -> None:
    ecs = boto3.client("ecs", region_name="ap-northeast-1")
    with Stubber(ecs) as stubber:
        stubber.add_response(
            "describe_services",
            {
                "services": [
                    {
                        "serviceName": "sbcntr-backend",
                        "status": "ACTIVE",
                        "taskDefinition": "arn:aws:ecs:ap-northeast-1:123456789012:"
                        "task-definition/sbcntr-backend:7",
                        "enableExecuteCommand": True,
                    }
                ]
            },
            {"cluster": "sbcntr-dev", "services": ["sbcntr-backend"]},
        )
        stubber.add_response(
            "describe_task_definition",
            {
                "taskDefinition": {
                    "family": "sbcntr-backend",
                    "enableFaultInjection": True,
                    "containerDefinitions": [
                        {"name": "backend"},
                        {
                            "name": "amazon-ssm-agent",
                            "environment": [{"name": "MANAGED_INSTANCE_ROLE_NAME", "value": "r"}],
                        },
                    ],
                }
            },
            {"taskDefinition": ANY},
        )
        problems = experiments.preflight(ecs, "dev", "network-latency-backend")
    assert problems == ["sbcntr-backend has ECS Exec on (the FIS task actions refuse it)"]


def test_an_alarm_stopping_the_experiment_is_reported_as_such() -> None:
    fis = boto3.client("fis", region_name="ap-northeast-1")
    at = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)
    with Stubber(fis) as stubber:
        for status, reason in (
            ("running", "Experiment is running."),
            ("stopped", "Experiment stopped by a stop condition."),
        ):
            stubber.add_response(
                "get_experiment",
                {
                    "experiment": {
                        "id": "EXP1",
                        "state": {"status": status, "reason": reason},
                        "actions": {"StopTasks": {"state": {"status": status, "reason": reason}}},
                        "startTime": at,
                    }
                },
                {"id": "EXP1"},
            )
        said: list[str] = []
        outcome = experiments.follow(fis, "EXP1", 0, said.append, lambda _: None)
    assert outcome.stopped_by_alarm
    assert said[-1] == "StopTasks: stopped (Experiment stopped by a stop condition.)"


def test_tasks_started_counts_the_service_events_in_the_window() -> None:
    ecs = boto3.client("ecs", region_name="ap-northeast-1")
    at = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)

    def event(minutes: int, message: str) -> dict[str, Any]:
        return {
            "id": str(minutes),
            "createdAt": at + dt.timedelta(minutes=minutes),
            "message": message,
        }

    with Stubber(ecs) as stubber:
        stubber.add_response(
            "describe_services",
            {
                "services": [
                    {
                        "serviceName": "sbcntr-backend",
                        "events": [
                            event(
                                1,
                                "(service sbcntr-backend) has started 2 tasks: (task a) (task b).",
                            ),
                            event(2, "(service sbcntr-backend) has reached a steady state."),
                            event(-5, "(service sbcntr-backend) has started 1 tasks: (task c)."),
                        ],
                    },
                    {"serviceName": "sbcntr-frontend", "events": []},
                ]
            },
            {"cluster": "sbcntr-dev", "services": ["sbcntr-frontend", "sbcntr-backend"]},
        )
        started = report.tasks_started(ecs, "dev", at, at + dt.timedelta(minutes=5))
    assert started == {"frontend": 0, "backend": 2}


def test_prod_needs_yes_and_every_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["drill", "prod", "az-outage"])
    assert args.handler(args) == 2
    assert "drilling prod needs --yes" in capsys.readouterr().err
    for command in ("drill", "shell"):
        sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
        for action in sub._actions:
            if action.dest in ("help", "poll") and command == "shell":
                continue
            if action.dest == "help":
                continue
            assert action.help, (command, action.dest)
            if action.default not in (None, False) and action.help != "==SUPPRESS==":
                assert "%(default)s" in action.help, (command, action.dest)
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        assert "usage: sbcntrctl" in capsys.readouterr().out
