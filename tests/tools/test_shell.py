"""``sbcntrctl shell``: the bastion found, started, reached and stopped.

A moto server holds the stacks' outputs (CloudFormation), the operations
cluster and the bastion's task definition (ECS); RunTask, ListTasks,
DescribeTasks and StopTask are moto's. moto has no ExecuteCommand and reports
no managed agents: ExecuteCommand's answer comes from botocore's Stubber, which
checks the request and the answer against the AWS API model (ECS API reference,
"ExecuteCommand": the session's sessionId, streamUrl and tokenValue), and the
ExecuteCommandAgent is added to DescribeTasks' containers as ECS reports it once
it runs (ECS developer guide, "Monitor Amazon ECS containers with ECS Exec").
The plugin is a real process on PATH that records how it was called, which is
how ``aws ecs execute-command`` calls it (awscli/customizations/ecs/executecommand.py).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.stub import Stubber

from sbcntrctl import shell
from sbcntrctl.__main__ import build_parser
from tests.tools.deploy_support import aws_env
from tests.tools.test_deploy import moto_server

__all__ = ["moto_server"]

CLUSTER = "sbcntr-dev-operations"
FAMILY = "sbcntr-dev-bastion"
OUTPUTS = {
    "sbcntr-dev-operations": {
        "OperationsCluster": CLUSTER,
        "BastionTaskDefinition": FAMILY,
        "BastionSecurityGroup": "sg-0bastion",
        "SessionLogGroup": "/sbcntr/dev/operator-sessions",
    },
    "sbcntr-dev-network": {"PrivateSubnet1": "subnet-0aaa", "PrivateSubnet2": "subnet-0bbb"},
    "sbcntr-dev-edge": {"FrontendSecurityGroup": "sg-0front", "BackendSecurityGroup": "sg-0back"},
}


def stack_with_outputs(name: str, outputs: dict[str, str]) -> None:
    body = {
        "Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(body))


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The environment's stacks and cluster on moto, and a plugin on PATH; returns
    the file the plugin writes its arguments to."""
    for key, value in aws_env(moto_server).items():
        monkeypatch.setenv(key, value)
    # moto walks a task from RUNNING to STOPPED one step per DescribeTasks by
    # default; a bastion runs until it is stopped.
    httpx.post(
        f"{moto_server}/moto-api/state-manager/set-transition",
        json={"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10000}},
    ).raise_for_status()
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
    # As network.yml has it (the interface endpoints' private DNS needs it).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.10.{n}.0/24")["Subnet"]["SubnetId"]
        for n in (1, 2)
    ]
    groups = {
        name: ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
        for name in ("bastion", "frontend", "backend")
    }
    OUTPUTS["sbcntr-dev-operations"]["BastionSecurityGroup"] = groups["bastion"]
    OUTPUTS["sbcntr-dev-network"].update(PrivateSubnet1=subnets[0], PrivateSubnet2=subnets[1])
    OUTPUTS["sbcntr-dev-edge"].update(
        FrontendSecurityGroup=groups["frontend"], BackendSecurityGroup=groups["backend"]
    )
    for name, outputs in OUTPUTS.items():
        stack_with_outputs(name, outputs)
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    ecs.register_task_definition(
        family=FAMILY,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        # moto sums the containers' memory to place a task, even on Fargate.
        containerDefinitions=[
            {"name": "bastion", "image": "backend", "essential": True, "memory": 512}
        ],
    )
    record = tmp_path / "plugin-args.json"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / "session-manager-plugin"
    plugin.write_text(
        "#!/bin/sh\n"
        f'"{sys.executable}" -c "import json, sys; '
        f"json.dump(sys.argv[1:], open('{record}', 'w'))\" \"$@\"\n"
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


class Ecs:
    """moto's ECS, with what moto lacks answered as ECS documents it."""

    def __init__(self, exec_enabled: bool = True) -> None:
        self.real = boto3.client("ecs")
        self.stubbed = boto3.client("ecs")
        self.stubber = Stubber(self.stubbed)
        self.exec_enabled = exec_enabled
        self.meta = self.real.meta
        self.calls: list[str] = []
        self.executed: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self.real, name)

    def describe_tasks(self, **kwargs: Any) -> dict[str, Any]:
        answer: dict[str, Any] = self.real.describe_tasks(**kwargs)
        for task in answer["tasks"]:
            if task.get("lastStatus") != "RUNNING":
                continue
            task["enableExecuteCommand"] = self.exec_enabled
            for n, container in enumerate(task["containers"]):
                container["runtimeId"] = f"{task['taskArn'].rsplit('/', 1)[-1]}-{n}"
                container["managedAgents"] = [
                    {"name": "ExecuteCommandAgent", "lastStatus": "RUNNING"}
                ]
        return answer

    def execute_command(self, **kwargs: Any) -> dict[str, Any]:
        self.executed = kwargs
        self.stubber.add_response(
            "execute_command",
            {
                "clusterArn": f"arn:aws:ecs:ap-northeast-1:123456789012:cluster/{CLUSTER}",
                "containerArn": "arn:aws:ecs:ap-northeast-1:123456789012:container/x",
                "containerName": "bastion",
                "interactive": True,
                "session": {
                    "sessionId": "ecs-execute-command-0123456789abcdef0",
                    "streamUrl": "wss://ssmmessages.ap-northeast-1.amazonaws.com/v1/data-channel/x",
                    "tokenValue": "token",
                },
                "taskArn": kwargs["task"],
            },
            kwargs,
        )
        with self.stubber:
            answer: dict[str, Any] = self.stubbed.execute_command(**kwargs)
        return answer


def run_shell(*argv: str, ecs: Ecs, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(shell, "ecs_client", lambda: ecs)
    args = build_parser().parse_args(["shell", "--poll", "0", *argv])
    code: int = args.handler(args)
    return code


def tasks(status: str) -> list[dict[str, Any]]:
    ecs = boto3.client("ecs")
    arns = ecs.list_tasks(cluster=CLUSTER, desiredStatus=status)["taskArns"]
    return ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"] if arns else []


def test_a_one_off_command_starts_the_bastion_reaches_it_and_stops_it_unless_kept(
    aws: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ecs = Ecs()
    code = run_shell(
        "dev",
        "--",
        "python",
        "-m",
        "backend",
        "migrate",
        "--help",
        ecs=ecs,
        monkeypatch=monkeypatch,
    )
    assert code == 0, capsys.readouterr().err
    session, region, operation, profile, target, endpoint = json.loads(aws.read_text())
    assert json.loads(session)["sessionId"] == "ecs-execute-command-0123456789abcdef0"
    assert (region, operation, profile) == ("ap-northeast-1", "StartSession", "")
    assert endpoint == os.environ["AWS_ENDPOINT_URL"]
    [stopped] = tasks("STOPPED")
    task_id = stopped["taskArn"].rsplit("/", 1)[-1]
    assert json.loads(target) == {"Target": f"ecs:{CLUSTER}_{task_id}_{task_id}-0"}
    assert stopped["startedBy"] == "sbcntrctl-shell"
    assert ecs.executed == {
        "cluster": CLUSTER,
        "task": stopped["taskArn"],
        "container": "bastion",
        "interactive": True,
        "command": "python -m backend migrate --help",
    }
    assert tasks("RUNNING") == []
    # The command ran is the one given, quoted for the remote shell.
    assert shell.command_line(["--", "python", "-m", "backend", "migrate", "--help"]) == (
        "python -m backend migrate --help"
    )
    assert shell.command_line(["psql", "select 1;"]) == "psql 'select 1;'"
    assert shell.command_line([]) == "/bin/sh"

    # --keep leaves the task it started; the next session attaches to it, and leaves it.
    ecs = Ecs()
    assert run_shell("dev", "--keep", ecs=ecs, monkeypatch=monkeypatch) == 0
    [kept] = tasks("RUNNING")
    ecs = Ecs()
    assert run_shell("dev", ecs=ecs, monkeypatch=monkeypatch) == 0
    assert "run_task" not in ecs.calls
    assert "stop_task" not in ecs.calls  # not started by this session: not stopped by it
    assert [t["taskArn"] for t in tasks("RUNNING")] == [kept["taskArn"]]
    assert json.loads(json.loads(aws.read_text())[4])["Target"].startswith(f"ecs:{CLUSTER}_")


def test_without_ecs_exec_the_wait_ends_with_one_line_and_the_task_stopped(
    aws: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_shell("dev", "--wait", "0", ecs=Ecs(exec_enabled=False), monkeypatch=monkeypatch)
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "ExecuteCommandAgent did not run within 0 s" in err
    assert tasks("RUNNING") == []
    assert not aws.exists()


def test_without_the_plugin_one_line_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    args = build_parser().parse_args(["shell", "dev"])
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "session-manager-plugin is not installed" in err


def test_without_the_operations_stack_one_line_says_so(
    moto_server: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    for key, value in aws_env(moto_server).items():
        monkeypatch.setenv(key, value)
    plugin = tmp_path / "session-manager-plugin"
    plugin.write_text("#!/bin/sh\n")
    plugin.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    args = build_parser().parse_args(["shell", "stg"])
    assert args.handler(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "sbcntr-stg-operations does not exist" in err
    assert "docs/operations.md" in err
