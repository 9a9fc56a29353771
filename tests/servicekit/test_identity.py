"""Which task serves a request: the ECS task metadata endpoint v4, else the host."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from servicekit.identity import TaskIdentity, read_task_metadata
from tests.conftest import StartService
from tests.support import ScriptedBackend, free_port, sqlite_url

# The shape of GET ${ECS_CONTAINER_METADATA_URI_V4}/task on Fargate (AWS documentation,
# "Task metadata v4 examples for tasks on Fargate"), trimmed to what matters here.
FARGATE_TASK = {
    "Cluster": "arn:aws:ecs:us-west-2:111122223333:cluster/default",
    "TaskARN": "arn:aws:ecs:us-west-2:111122223333:task/default/e9028f8d5d8e4f258373e7b93ce9a3c3",
    "Family": "curltest",
    "Revision": "3",
    "DesiredStatus": "RUNNING",
    "KnownStatus": "RUNNING",
    "AvailabilityZone": "us-west-2d",
    "LaunchType": "FARGATE",
    "Containers": [],
}


def test_reads_task_id_and_zone_from_the_metadata_endpoint() -> None:
    with ScriptedBackend([(200, json.dumps(FARGATE_TASK).encode())]) as agent:
        identity = read_task_metadata(f"{agent.url}/v4/abc-123")
        asked = [(method, path) for method, path, _ in agent.requests]
    assert asked == [("GET", "/v4/abc-123/task")]
    assert identity == TaskIdentity("e9028f8d5d8e4f258373e7b93ce9a3c3", "us-west-2d", on_ecs=True)
    assert identity.header_value() == "task=e9028f8d5d8e4f258373e7b93ce9a3c3; az=us-west-2d"


@pytest.mark.parametrize(
    "answer", [(500, b'{"error": "x"}'), (200, b"not json"), (200, b'{"Cluster": "c"}')]
)
def test_falls_back_to_the_host_when_the_endpoint_does_not_answer_as_documented(
    answer: tuple[int, bytes],
) -> None:
    with ScriptedBackend([answer]) as agent:
        identity = read_task_metadata(agent.url)
    assert identity.task.startswith(f"{socket.gethostname()}:")
    assert identity.zone is None
    assert not identity.on_ecs


def test_unreachable_endpoint_falls_back_at_once() -> None:
    identity = read_task_metadata(f"http://127.0.0.1:{free_port()}/v4/x")
    assert not identity.on_ecs


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("task=abc; az=ap-northeast-1a", TaskIdentity("abc", "ap-northeast-1a")),
        ("task=host:42", TaskIdentity("host:42", None)),
        ("az=ap-northeast-1a", None),
        ("", None),
    ],
)
def test_served_by_header_is_read_back(header: str, expected: TaskIdentity | None) -> None:
    assert TaskIdentity.from_header(header) == expected


@pytest.mark.slow
def test_every_response_says_which_process_served_it(start: StartService, tmp_path: Path) -> None:
    backend = start(
        "backend",
        env={"DATABASE_URL": sqlite_url(tmp_path / "i.sqlite3"), "AWS_XRAY_SDK_ENABLED": "false"},
    )
    expected = f"task={socket.gethostname()}:{backend.process.pid}"
    for path in ("/healthz", "/v1/items", "/v1/items/999999"):
        assert httpx.get(f"{backend.url}{path}").headers["x-served-by"] == expected
    started = [line for line in backend.log_lines() if line.get("event") == "started"]
    assert started[0]["task"] == expected.removeprefix("task=")
