"""JSON logs and X-Ray traces of the real services, frontend -> backend.

A UDP listener stands in for the X-Ray daemon; the sampling rules sample
every request, so every request must form one complete trace.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import StartService
from tests.integration.conftest import Stack, start_stack
from tests.support import (
    NO_SAMPLING_RULES,
    SegmentCollector,
    Service,
    free_port,
    rules_file,
    sample_all_rules,
)

# Left out by dev.py test --quick (integration: test_services runs both services).
pytestmark = pytest.mark.slow

SCHEMA_FIELDS = {"timestamp", "level", "service", "event", "logger"}
ACCESS_FIELDS = SCHEMA_FIELDS | {
    "method",
    "path",
    "status",
    "duration_ms",
    "client_ip",
    "user_agent",
    "request_id",
    "trace_id",
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TRACE_ID = re.compile(r"^1-[0-9a-f]{8}-[0-9a-f]{24}$")
LEVELS = {"debug", "info", "warning", "error", "critical"}


@pytest.fixture
def collector() -> Iterator[SegmentCollector]:
    with SegmentCollector() as daemon:
        yield daemon


@pytest.fixture
def traced(start: StartService, tmp_path: Path, collector: SegmentCollector) -> Stack:
    rules = rules_file(tmp_path, sample_all_rules(), "sample-all.json")
    env = {"AWS_XRAY_DAEMON_ADDRESS": collector.address, "XRAY_SAMPLING_RULES": str(rules)}
    return start_stack(start, tmp_path, backend_env=env, frontend_env=env)


def check_schema(service: Service) -> list[dict[str, Any]]:
    lines = service.log_lines()  # fails on any line that is not JSON
    assert lines, f"{service.name} wrote nothing"
    for line in lines:
        assert line.keys() >= SCHEMA_FIELDS, line
        assert TIMESTAMP.match(line["timestamp"]), line
        assert line["level"] in LEVELS, line
        assert line["service"] == service.name
    for line in service.access_lines():
        assert line.keys() >= ACCESS_FIELDS, line
        assert isinstance(line["status"], int)
        assert isinstance(line["duration_ms"], float | int)
        assert TRACE_ID.match(line["trace_id"]), line
    assert service.stderr() == "", service.stderr()
    return lines


async def drive(frontend: str, count: int) -> list[httpx.Response]:
    """``count`` concurrent page requests and item posts, each with its own request id."""
    async with httpx.AsyncClient(base_url=frontend, timeout=20) as client:

        async def one(n: int) -> httpx.Response:
            headers = {"X-Request-Id": f"obs-{n}"}
            if n % 3 == 2:
                return await client.post("/items", data={"title": f"t{n}"}, headers=headers)
            return await client.get("/" if n % 3 == 0 else "/items", headers=headers)

        return await asyncio.gather(*(one(n) for n in range(count)))


def test_each_request_is_one_trace_across_both_services(
    traced: Stack, collector: SegmentCollector
) -> None:
    responses = asyncio.run(drive(traced.frontend.url, 30))
    assert all(r.status_code in (200, 303) for r in responses)
    # Every page makes two backend calls (gather fan-out), every post one.
    expected_backend = sum(1 if r.request.method == "POST" else 2 for r in responses)
    segments = collector.wait_for(30 + expected_backend)
    assert collector.bad_datagrams == []

    frontend_segments = [s for s in segments if s["name"] == "frontend"]
    orphans = [s for s in segments if s["name"] == "backend" and "parent_id" not in s]
    assert orphans == []
    backend_segments = {s["parent_id"]: s for s in segments if s["name"] == "backend"}
    assert len(frontend_segments) == 30
    assert len(backend_segments) == expected_backend

    by_trace = {s["trace_id"]: s for s in frontend_segments}
    for response in responses:
        root = response.headers["x-amzn-trace-id"].split(";")[0].removeprefix("Root=")
        segment = by_trace[root]
        assert segment["http"]["response"]["status"] == response.status_code
        assert segment["http"]["request"]["method"] == response.request.method
        calls = [s for s in segment.get("subsegments", []) if s.get("namespace") == "remote"]
        assert len(calls) == (1 if response.request.method == "POST" else 2)
        for call in calls:
            backend = backend_segments[call["id"]]
            assert backend["trace_id"] == root
            assert backend["http"]["response"]["status"] == call["http"]["response"]["status"]
            assert backend["http"]["response"]["status"] in (200, 201)
        # Database calls are subsegments of the backend segments.
        queries = [
            sub["sql"]["sanitized_query"]
            for call in calls
            for sub in backend_segments[call["id"]].get("subsegments", [])
            if "sql" in sub
        ]
        if response.request.method == "POST":
            assert any(q.startswith("INSERT INTO items") for q in queries)
        else:
            assert any(q.startswith("SELECT") for q in queries)


def test_access_logs_one_line_per_request_with_the_trace_id(
    traced: Stack, collector: SegmentCollector
) -> None:
    responses = asyncio.run(drive(traced.frontend.url, 24))
    collector.wait_for(24)
    traced.frontend.stop()
    traced.backend.stop()

    front = check_schema(traced.frontend)
    back = check_schema(traced.backend)
    front_access = [r for r in front if r["logger"] == "servicekit.access"]
    # One line per request: the client library's own per-request line is silenced.
    assert [r for r in front if r["logger"] == "httpx"] == []
    counts = Counter(line["request_id"] for line in front_access)
    assert {f"obs-{n}" for n in range(24)} <= counts.keys()
    assert all(counts[f"obs-{n}"] == 1 for n in range(24))

    for response in responses:
        request_id = response.headers["x-request-id"]
        (line,) = [r for r in front_access if r["request_id"] == request_id]
        root = response.headers["x-amzn-trace-id"].split(";")[0].removeprefix("Root=")
        assert line["trace_id"] == root
        assert line["status"] == response.status_code
        assert line["level"] == "info"
        # The backend's lines for this request carry the same request and trace ids.
        backend_lines = [
            r
            for r in back
            if r.get("request_id") == request_id and r["logger"] == "servicekit.access"
        ]
        assert backend_lines
        assert {r["trace_id"] for r in backend_lines} == {root}


def test_incoming_trace_header_is_honoured(traced: Stack, collector: SegmentCollector) -> None:
    root, parent = "1-5759e988-bd862e3fe1be46a994272793", "53995c3f42cd8ad8"
    response = httpx.get(
        f"{traced.frontend.url}/",
        headers={"X-Amzn-Trace-Id": f"Root={root};Parent={parent};Sampled=1"},
    )
    assert response.status_code == 200
    assert response.headers["x-amzn-trace-id"].startswith(f"Root={root}")
    segments = collector.wait_for(3)
    (frontend,) = [s for s in segments if s["name"] == "frontend"]
    assert frontend["trace_id"] == root
    assert frontend["parent_id"] == parent
    assert {s["trace_id"] for s in segments} == {root}


def test_unsampled_requests_send_nothing_but_keep_their_trace_id(
    start: StartService, tmp_path: Path, collector: SegmentCollector
) -> None:
    # The frontend's rules sample nothing; the backend follows its Sampled=0.
    rules = rules_file(tmp_path, NO_SAMPLING_RULES)
    env = {"AWS_XRAY_DAEMON_ADDRESS": collector.address, "XRAY_SAMPLING_RULES": str(rules)}
    stack = start_stack(start, tmp_path, backend_env=env, frontend_env=env)
    root = "1-5759e988-00000000000000000000abcd"
    response = httpx.get(
        f"{stack.frontend.url}/items",
        headers={"X-Amzn-Trace-Id": f"Root={root}", "X-Request-Id": "unsampled-1"},
    )
    assert response.status_code == 200
    assert collector.wait_for(1, timeout=1) == []
    stack.frontend.stop()
    stack.backend.stop()
    for service in (stack.frontend, stack.backend):
        lines = [r for r in service.access_lines() if r["request_id"] == "unsampled-1"]
        assert lines
        assert {r["trace_id"] for r in lines} == {root}


def test_a_client_cannot_force_or_forge_tracing(
    start: StartService, tmp_path: Path, collector: SegmentCollector
) -> None:
    """Sampled=1 from the internet does not sample; a forged root is replaced."""
    rules = rules_file(tmp_path, NO_SAMPLING_RULES)
    env = {"AWS_XRAY_DAEMON_ADDRESS": collector.address, "XRAY_SAMPLING_RULES": str(rules)}
    stack = start_stack(start, tmp_path, backend_env=env, frontend_env=env)
    forced = "Root=1-5759e988-00000000000000000000abcd;Sampled=1"
    for _ in range(10):
        assert httpx.get(f"{stack.frontend.url}/", headers={"X-Amzn-Trace-Id": forced}).is_success
    forged = httpx.get(
        f"{stack.frontend.url}/", headers={"X-Amzn-Trace-Id": "Root=evil<script>;Sampled=1"}
    )
    assert collector.wait_for(1, timeout=1) == []
    stack.frontend.stop()
    stack.backend.stop()
    root = forged.headers["x-amzn-trace-id"].removeprefix("Root=")
    assert re.fullmatch(r"1-[0-9a-f]{8}-[0-9a-f]{24}", root)
    for service in (stack.frontend, stack.backend):
        assert "evil" not in service.stdout_path.read_text()


def test_server_errors_are_faults_in_the_trace(
    start: StartService, tmp_path: Path, collector: SegmentCollector
) -> None:
    rules = rules_file(tmp_path, sample_all_rules(), "sample-all.json")
    env = {"AWS_XRAY_DAEMON_ADDRESS": collector.address, "XRAY_SAMPLING_RULES": str(rules)}
    stack = start_stack(
        start,
        tmp_path,
        backend_env={**env, "FAULT_INJECTION_ENABLED": "true", "FAULT_ERROR_RATE": "1"},
        frontend_env=env,
    )
    response = httpx.get(f"{stack.frontend.url}/")
    assert response.status_code == 502
    segments = collector.wait_for(3)
    (frontend,) = [s for s in segments if s["name"] == "frontend"]
    assert frontend["fault"] is True
    assert frontend["http"]["response"]["status"] == 502
    backends = [s for s in segments if s["name"] == "backend"]
    assert backends
    assert all(s["fault"] is True and s["http"]["response"]["status"] == 500 for s in backends)


@pytest.mark.parametrize("mode", ["tracing off", "no daemon listening"])
def test_services_work_the_same_without_tracing(
    start: StartService, tmp_path: Path, mode: str
) -> None:
    if mode == "tracing off":
        env = {"AWS_XRAY_SDK_ENABLED": "false"}
    else:
        env = {"AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{free_port()}"}
    stack = start_stack(start, tmp_path, backend_env=env, frontend_env=env)
    responses = asyncio.run(drive(stack.frontend.url, 12))
    assert all(r.status_code in (200, 303) for r in responses)
    if mode == "tracing off":
        assert all("x-amzn-trace-id" not in r.headers for r in responses)
    stack.frontend.stop()
    stack.backend.stop()
    for service in (stack.frontend, stack.backend):
        lines = service.log_lines()
        assert [r for r in lines if r["level"] in ("warning", "error", "critical")] == []
        access = [r for r in lines if r["logger"] == "servicekit.access"]
        assert len(access) >= 12 if service.name == "frontend" else len(access) >= 20
