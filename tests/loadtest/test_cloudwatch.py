"""``sbcntrctl capacity --cloudwatch``: STEP4 from CloudWatch, STEP5 by the local code path.

A moto server holds a synthetic run: five minutes of load balancer requests,
ECS CPU and memory, Container Insights task counts, and error lines in the
services' log groups. moto does not compute percentiles in GetMetricData and
has no DescribeScalingActivities: those two answers come from botocore's
Stubber, which checks each request and answer against the AWS API model.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from sbcntrctl.loadtest import capacity, cloudwatch
from tests.tools.deploy_support import aws_env
from tests.tools.test_deploy import moto_server

__all__ = ["moto_server"]

START = dt.datetime(2026, 11, 27, 1, 0, tzinfo=dt.UTC)
END = START + dt.timedelta(minutes=5)
LB = "app/sbcntr-dev-public/0123456789abcdef"
TG = "targetgroup/sbcntr-dev-frontend/fedcba9876543210"
RUNNING = {"frontend": [2, 2, 3, 4, 4], "backend": [2, 2, 2, 3, 3]}
# Two datapoints a minute: CloudWatch's Average is their mean, Maximum the higher.
CPU = {"frontend": [(55, 70), (62, 80), (58, 75), (50, 66), (48, 60)], "backend": [(30, 40)] * 5}


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for key, value in aws_env(moto_server).items():
        monkeypatch.setenv(key, value)
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName="sbcntr-dev")
    for service in cloudwatch.SERVICES:
        td = ecs.register_task_definition(
            family=f"sbcntr-{service}",
            cpu="512",
            memory="1024",
            containerDefinitions=[{"name": service, "image": "x", "essential": True}],
        )["taskDefinition"]["taskDefinitionArn"]
        ecs.create_service(
            cluster="sbcntr-dev", serviceName=f"sbcntr-{service}", taskDefinition=td, desiredCount=2
        )
    metrics = boto3.client("cloudwatch")
    for minute in range(5):
        at = START + dt.timedelta(minutes=minute, seconds=30)
        lb = [{"Name": "LoadBalancer", "Value": LB}]
        data = [
            {"MetricName": "RequestCount", "Dimensions": lb, "Value": 600, "Timestamp": at},
            {
                "MetricName": "HTTPCode_Target_5XX_Count",
                "Dimensions": lb,
                "Value": 1,
                "Timestamp": at,
            },
        ]
        metrics.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=data)
        for service in cloudwatch.SERVICES:
            dims = [
                {"Name": "ClusterName", "Value": "sbcntr-dev"},
                {"Name": "ServiceName", "Value": f"sbcntr-{service}"},
            ]
            low, high = CPU[service][minute]
            usage = [
                {"MetricName": name, "Dimensions": dims, "Values": [low, high], "Timestamp": at}
                for name in ("CPUUtilization", "MemoryUtilization")
            ]
            metrics.put_metric_data(Namespace="AWS/ECS", MetricData=usage)
            tasks = [
                {
                    "MetricName": "RunningTaskCount",
                    "Dimensions": dims,
                    "Value": RUNNING[service][minute],
                    "Timestamp": at,
                }
            ]
            metrics.put_metric_data(Namespace="ECS/ContainerInsights", MetricData=tasks)
    logs = boto3.client("logs")
    for service in cloudwatch.SERVICES:
        logs.create_log_group(logGroupName=f"/sbcntr/dev/{service}")
        logs.create_log_stream(logGroupName=f"/sbcntr/dev/{service}", logStreamName="s")
    during = START + dt.timedelta(minutes=2, seconds=10)
    line = {"level": "error", "event": "request", "service": "frontend", "status": 502}
    logs.put_log_events(
        logGroupName="/sbcntr/dev/frontend",
        logStreamName="s",
        logEvents=[{"timestamp": int(during.timestamp() * 1000), "message": json.dumps(line)}],
    )
    return {"ecs": ecs, "cloudwatch": metrics, "logs": logs}


def scaling_client() -> Any:
    client = boto3.client("application-autoscaling")
    stubber = Stubber(client)
    for service in cloudwatch.SERVICES:
        activities = [
            {
                "ActivityId": f"{service}-{n}",
                "ServiceNamespace": "ecs",
                "ResourceId": f"service/sbcntr-dev/sbcntr-{service}",
                "ScalableDimension": "ecs:service:DesiredCount",
                "Description": f"Setting desired count to {count}.",
                "Cause": "monitor alarm TargetTracking-... in state ALARM triggered policy cpu",
                "StartTime": START + dt.timedelta(minutes=minute),
                "EndTime": START + dt.timedelta(minutes=minute, seconds=40),
                "StatusCode": "Successful",
            }
            for n, (minute, count) in enumerate(
                [(2, 3), (3, 4), (4, 3)] if service == "frontend" else [(3, 3)]
            )
        ]
        stubber.add_response(
            "describe_scaling_activities",
            {"ScalingActivities": activities},
            {"ServiceNamespace": "ecs", "ResourceId": f"service/sbcntr-dev/sbcntr-{service}"},
        )
    stubber.activate()
    return client


class Percentiles:
    """moto's CloudWatch, with the percentile queries answered as CloudWatch would."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def get_metric_data(self, **kwargs: Any) -> dict[str, Any]:
        wanted = [q for q in kwargs["MetricDataQueries"] if q["MetricStat"]["Stat"][0] != "p"]
        answer = self.real.get_metric_data(**{**kwargs, "MetricDataQueries": wanted})
        stubbed = boto3.client("cloudwatch")
        with Stubber(stubbed) as stubber:
            results = [
                {
                    "Id": q["Id"],
                    "Label": "Latency",
                    "Timestamps": [START],
                    "Values": [value],
                    "StatusCode": "Complete",
                }
                for q, value in zip(
                    [q for q in kwargs["MetricDataQueries"] if q not in wanted],
                    (41.0, 180.0, 420.0),
                    strict=True,
                )
            ]
            stubber.add_response(
                "get_metric_data",
                {"MetricDataResults": results},
                {"MetricDataQueries": ANY, "StartTime": ANY, "EndTime": ANY, "ScanBy": ANY},
            )
            percentiles = stubbed.get_metric_data(**{k: v for k, v in kwargs.items()})
        answer["MetricDataResults"] += percentiles["MetricDataResults"]
        return answer


def read_window(aws: dict[str, Any]) -> cloudwatch.Window:
    """The seeded run's window as the command reads it (percentiles and scaling stubbed)."""
    clients = {
        "cloudwatch": Percentiles(aws["cloudwatch"]),
        "ecs": aws["ecs"],
        "application-autoscaling": scaling_client(),
        "logs": aws["logs"],
    }
    return cloudwatch.read(clients, "dev", START, END, LB, TG)


def test_step4_checklist_and_step5_from_cloudwatch(aws: dict[str, Any]) -> None:
    window = read_window(aws)
    assert window.requests == 3000
    assert window.rps == pytest.approx(10.0)
    assert window.failures == 5
    assert window.latency_ms == {"p50": 41.0, "p95": 180.0, "p99": 420.0}
    assert window.task_vcpu == {"frontend": 0.5, "backend": 0.5}
    assert window.running["frontend"] == [2, 2, 3, 4, 4]
    assert len(window.activities) == 4
    assert len(window.errors_while_scaling) == 1  # the 502 line, inside an activity's window

    checks = {c.what: c for c in cloudwatch.checklist(window, 10, 500, 0.01)}
    assert checks["the required request rate is met"].met
    assert checks["p95 latency within the threshold"].met
    assert checks["errors within the threshold"].met  # 5 of 3000
    assert checks["frontend CPU neither idle nor tight"].met  # peak 80%
    assert checks["frontend scaled out"].met
    assert checks["frontend scaled in"].met
    assert checks["backend scaled out"].met
    assert not checks["backend scaled in"].met
    assert not checks["no error logged while scaling"].met

    step = cloudwatch.as_step(window)
    # frontend: sum(average % x 0.5 vCPU x tasks x 60 s)
    expected = sum(
        (low + high) / 2 / 100 * 0.5 * n * 60
        for (low, high), n in zip(CPU["frontend"], RUNNING["frontend"], strict=True)
    )
    assert step.cpu_seconds["frontend"] == pytest.approx(expected)
    local = capacity.recommend("frontend", step, 10, 3, 70)
    assert local.cpu_per_request_ms == pytest.approx(expected / 3000 * 1000)
    assert local.arithmetic[0].startswith("frontend: ")


def test_a_tight_and_idle_service_fail_their_checks(aws: dict[str, Any]) -> None:
    window = read_window(aws)
    window.cpu["frontend"] = [(90, 97)] * 5
    window.cpu["backend"] = [(3, 5)] * 5
    checks = {c.what: c for c in cloudwatch.checklist(window, 50, 100, 0.0001)}
    assert not checks["frontend CPU neither idle nor tight"].met
    assert not checks["backend CPU neither idle nor tight"].met
    assert not checks["the required request rate is met"].met
    assert not checks["p95 latency within the threshold"].met
    assert not checks["errors within the threshold"].met


def test_the_command_line_refuses_a_window_it_cannot_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sbcntrctl.__main__ import build_parser  # noqa: PLC0415

    parser = build_parser()
    args = parser.parse_args(["capacity", "--cloudwatch", "dev", "--start", "2026-11-27T01:05"])
    assert args.handler(args) == 2
    assert "--cloudwatch needs --start before --end" in capsys.readouterr().err
    args = parser.parse_args(["capacity"])
    assert args.handler(args) == 2
    assert "give --steps and --cpu, or --cloudwatch ENV" in capsys.readouterr().err
