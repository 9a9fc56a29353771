"""The test-traffic hook against real services on loopback ports.

The success path runs the real backend and frontend (the frontend calling the
backend, as the test listener's targets would); the failure paths run servers
that answer 500 or the wrong content. Events have the shape ECS documents for a
lifecycle hook ("Lifecycle hooks for Amazon ECS service deployments", lifecycle
payloads, and "Lambda hooks for Amazon ECS service deployments" for
``hookStatus``, ``callBackDelay`` and ``hookDetails``:
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/lambda-lifecycle-hooks.html).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from deploy_hook import checks, handler
from tests.infra import iam
from tests.infra.cfn import resolve, template
from tests.support import ScriptedBackend, Service, free_port, sqlite_url, start_service

SERVICE_ARN = "arn:aws:ecs:ap-northeast-1:123456789012:service/sbcntr-stg/sbcntr-stg-frontend"
REVISION = (
    "arn:aws:ecs:ap-northeast-1:123456789012:service-revision/sbcntr-stg/sbcntr-stg-frontend/4711"
)
BLUE = (
    "arn:aws:ecs:ap-northeast-1:123456789012:service-revision/sbcntr-stg/sbcntr-stg-frontend/4710"
)
ALB = "app/sbcntr-stg-public/50dc6c495c0c9188"


def event(**details: Any) -> dict[str, Any]:
    """The POST_TEST_TRAFFIC_SHIFT payload: test traffic on green, production on blue."""
    return {
        "serviceArn": SERVICE_ARN,
        "targetServiceRevisionArn": REVISION,
        "testTrafficWeights": {REVISION: 100, BLUE: 0},
        "productionTrafficWeights": {BLUE: 100, REVISION: 0},
        "hookDetails": details,
    }


def access_lines(service: Service, count: int, timeout: float = 5) -> list[dict[str, Any]]:
    """The service's access lines once ``count`` are written (each is written just
    after its response is sent)."""
    return service.wait_for_lines(
        lambda line: line.get("logger") == "servicekit.access", count, timeout
    )


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service]]:
    """A real backend (seeded database) and a real frontend calling it."""
    tmp = tmp_path_factory.mktemp("hook")
    backend = start_service(
        "backend",
        tmp,
        env={"DATABASE_URL": sqlite_url(tmp / "b.sqlite3"), "AWS_XRAY_SDK_ENABLED": "false"},
    )
    # ALLOWED_HOSTS as the task definition sets it (the ALBs' names) plus loopback.
    hosts = ".elb.amazonaws.com,127.0.0.1"
    frontend = start_service(
        "frontend",
        tmp,
        env={"BACKEND_URL": backend.url, "AWS_XRAY_SDK_ENABLED": "false", "ALLOWED_HOSTS": hosts},
    )
    yield backend, frontend
    frontend.stop()
    backend.stop()


@pytest.mark.slow
@pytest.mark.quick
def test_a_release_that_answers_right_passes(
    services: tuple[Service, Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, frontend = services
    monkeypatch.setenv("FRONTEND_TEST_URL", frontend.url)
    monkeypatch.setenv("BACKEND_TEST_URL", backend.url)
    monkeypatch.delenv("FRONTEND_ALB_FULL_NAME", raising=False)
    assert handler.lambda_handler(event(service="frontend")) == {"hookStatus": "SUCCEEDED"}
    assert handler.lambda_handler(event(service="backend")) == {"hookStatus": "SUCCEEDED"}
    # Every check reached the service: the frontend's access log names each path.
    lines = access_lines(frontend, len(checks.CHECKS["frontend"]))
    assert {c.path for c in checks.CHECKS["frontend"]} <= {line["path"] for line in lines}


@pytest.mark.slow
def test_the_public_alb_is_reached_on_its_private_addresses(
    services: tuple[Service, Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    """EC2 names the ALB's interfaces (DescribeNetworkInterfaces, documented response
    shape; moto creates no ALB interfaces); the hook connects to their private
    address with the ALB's name as Host, never to the public DNS answer."""
    _, frontend = services
    public_name = f"sbcntr-stg-public-1234567890.ap-northeast-1.elb.amazonaws.com:{frontend.port}"
    monkeypatch.setenv("FRONTEND_TEST_URL", f"http://{public_name}")
    monkeypatch.setenv("FRONTEND_ALB_FULL_NAME", ALB)
    ec2 = boto3.client(
        "ec2", region_name="ap-northeast-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_network_interfaces",
            {
                "NetworkInterfaces": [
                    {
                        "NetworkInterfaceId": "eni-0b1",
                        "Description": f"ELB {ALB}",
                        "InterfaceType": "interface",
                        "PrivateIpAddress": "127.0.0.1",
                        "Status": "in-use",
                    }
                ]
            },
            {"Filters": [{"Name": "description", "Values": [f"ELB {ALB}"]}]},
        )
        before = len(access_lines(frontend, 0))
        assert handler.lambda_handler(event(service="frontend"), ec2=ec2) == {
            "hookStatus": "SUCCEEDED"
        }
        stub.assert_no_pending_responses()
    expected = before + len(checks.CHECKS["frontend"])
    assert len(access_lines(frontend, expected)) == expected


def test_an_alb_without_interfaces_fails_the_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONTEND_TEST_URL", "http://sbcntr-stg-public-1.elb.amazonaws.com:8080")
    monkeypatch.setenv("FRONTEND_ALB_FULL_NAME", ALB)
    ec2 = boto3.client(
        "ec2", region_name="ap-northeast-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(ec2) as stub:
        stub.add_response("describe_network_interfaces", {"NetworkInterfaces": []})
        assert handler.lambda_handler(event(service="frontend"), ec2=ec2) == {
            "hookStatus": "FAILED"
        }


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ((500, b'{"detail":"boom"}'), "GET /: 500 (expected 200)"),
        ((200, b"<h1>Under maintenance</h1>"), "no '<h1>Hello world</h1>' in the answer"),
    ],
    ids=["server error", "wrong content"],
)
def test_a_release_that_answers_wrong_is_retried_then_fails(
    answer: tuple[int, bytes],
    problem: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("FRONTEND_ALB_FULL_NAME", raising=False)
    monkeypatch.setenv("MAX_ATTEMPTS", "2")
    monkeypatch.setenv("RETRY_DELAY_SECONDS", "15")
    with ScriptedBackend([answer]) as bad:
        monkeypatch.setenv("FRONTEND_TEST_URL", bad.url)
        first = handler.lambda_handler(event(service="frontend"))
        # ECS calls again with the hookDetails returned (the service kept, attempt 2).
        assert first == {
            "hookStatus": "IN_PROGRESS",
            "callBackDelay": 15,
            "hookDetails": {"service": "frontend", "attempt": 2},
        }
        json.dumps(first)  # the answer ECS reads is JSON
        second = handler.lambda_handler(event(**first["hookDetails"]))
        assert second == {"hookStatus": "FAILED"}
        assert len(bad.requests) == 2 * len(checks.CHECKS["frontend"])
    assert problem in caplog.text


def test_an_unreachable_test_listener_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("BACKEND_TEST_URL", f"http://127.0.0.1:{free_port()}")
    result = handler.lambda_handler(event(service="backend", attempt=3))
    assert result == {"hookStatus": "FAILED"}
    assert "GET /v1/helloworld: no answer" in caplog.text


@pytest.mark.parametrize(
    "details", [{}, {"service": "database"}], ids=["no hookDetails", "unknown service"]
)
def test_a_hook_that_names_no_known_service_fails(details: dict[str, Any]) -> None:
    assert handler.lambda_handler(event(**details)) == {"hookStatus": "FAILED"}


def test_a_service_without_its_test_url_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BACKEND_TEST_URL", raising=False)
    assert handler.lambda_handler(event(service="backend")) == {"hookStatus": "FAILED"}


def test_the_zip_works_alone(tmp_path: Path) -> None:
    """The zip the README builds, on a Python without site-packages (-S: no boto3, no
    project code), runs a round of checks: the hook needs nothing beyond its folder
    and the standard library on this path (boto3 only for the ALB look-up)."""
    package = tmp_path / "deploy_hook.zip"
    root = Path(handler.__file__).parents[1]
    subprocess.run(
        [sys.executable, "-m", "zipfile", "-c", str(package), "deploy_hook/"], cwd=root, check=True
    )
    answer = b'{"data": [], "total": 0, "unread": 0}'
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from deploy_hook import handler;"
        "print(json.dumps(handler.lambda_handler(json.loads(sys.argv[2]))))"
    )
    with ScriptedBackend([(200, answer)]) as backend:
        env = {"BACKEND_TEST_URL": backend.url, "PATH": os.environ["PATH"]}
        run = subprocess.run(
            [
                sys.executable,
                "-S",
                "-c",
                script,
                str(package),
                json.dumps(event(service="backend")),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"hookStatus": "SUCCEEDED"}
    assert [r[1] for r in backend.requests] == [c.path for c in checks.CHECKS["backend"]]


def test_the_stack_lets_the_hook_make_its_calls() -> None:
    """The function's role (infra/deploy-hook.yml) allows what the hook does: the
    network interfaces Lambda manages in a VPC and the ALB look-up
    (DescribeNetworkInterfaces, which takes no resource ARN: "Giving Lambda functions
    access to resources in an Amazon VPC", AWS Lambda Developer Guide), its own logs,
    and nothing on other log groups."""
    tpl = template("deploy-hook")
    log_group = (
        "arn:aws:logs:ap-northeast-1:123456789012:log-group:/aws/lambda/sbcntr-dev-deploy-hook"
    )
    # Fn::GetAtt Arn of AWS::Logs::LogGroup ends in ":*" (its "Return values").
    names = {"DeployHookLogGroup.Arn": f"{log_group}:*"}
    role = tpl["Resources"]["DeployHookFunctionRole"]["Properties"]
    policies = [resolve(p["PolicyDocument"], names) for p in role["Policies"]]
    for action in ("ec2:DescribeNetworkInterfaces", "ec2:CreateNetworkInterface"):
        assert iam.allows(policies, action, "*"), action
    assert iam.allows(policies, "logs:PutLogEvents", f"{log_group}:log-stream:x")
    other = log_group.replace("deploy-hook", "error-notifier")
    assert not iam.allows(policies, "logs:PutLogEvents", f"{other}:log-stream:x")
    function = tpl["Resources"]["DeployHookFunction"]["Properties"]
    assert function["Handler"] == f"{handler.__name__}.{handler.lambda_handler.__name__}"
    variables = set(function["Environment"]["Variables"])
    assert {"FRONTEND_TEST_URL", "BACKEND_TEST_URL", "FRONTEND_ALB_FULL_NAME"} <= variables
    assert {"MAX_ATTEMPTS", "RETRY_DELAY_SECONDS"} <= variables


def test_every_page_of_interfaces_is_read_and_the_addresses_sorted() -> None:
    """One interface per ALB node (an AZ each); DescribeNetworkInterfaces pages with
    NextToken (EC2 API Reference, DescribeNetworkInterfaces)."""
    ec2 = boto3.client(
        "ec2", region_name="ap-northeast-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    wanted = {"Filters": [{"Name": "description", "Values": [f"ELB {ALB}"]}]}
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_network_interfaces",
            {
                "NetworkInterfaces": [
                    {"NetworkInterfaceId": "eni-2", "PrivateIpAddress": "10.10.1.9"}
                ],
                "NextToken": "page-2",
            },
            wanted,
        )
        stub.add_response(
            "describe_network_interfaces",
            {
                "NetworkInterfaces": [
                    {"NetworkInterfaceId": "eni-1", "PrivateIpAddress": "10.10.0.7"}
                ]
            },
            {**wanted, "NextToken": "page-2"},
        )
        assert handler.private_addresses(ALB, ec2) == ["10.10.0.7", "10.10.1.9"]
        stub.assert_no_pending_responses()
