"""TRACING_BACKEND=otel on the real services, frontend -> backend.

An OTLP/HTTP receiver (tests/support.py) stands in for the ADOT collector and
decodes the exporter's protobuf; the UDP segment collector stands in for the
X-Ray daemon where one side stays on the X-Ray SDK. The sampling rules sample
every request, so every request must form one complete trace.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import StartService
from tests.integration.conftest import Stack, start_stack
from tests.integration.test_observability import TRACE_ID, drive
from tests.support import (
    NO_SAMPLING_RULES,
    OtlpReceiver,
    SegmentCollector,
    rules_file,
    sample_all_rules,
)

# Left out by dev.py test --quick (integration: test_services runs both services).
pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as otlp:
        yield otlp


@pytest.fixture
def collector() -> Iterator[SegmentCollector]:
    with SegmentCollector() as daemon:
        yield daemon


def tracing_env(
    backend: str, tmp_path: Path, receiver: OtlpReceiver, collector: SegmentCollector
) -> dict[str, str]:
    rules = rules_file(tmp_path, sample_all_rules(), "sample-all.json")
    return {
        "TRACING_BACKEND": backend,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "AWS_XRAY_DAEMON_ADDRESS": collector.address,
        "XRAY_SAMPLING_RULES": str(rules),
        # No periodic export during a test: spans arrive by the shutdown's flush.
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
    }


def start_mixed(
    start: StartService,
    tmp_path: Path,
    receiver: OtlpReceiver,
    collector: SegmentCollector,
    *,
    frontend: str,
    backend: str,
    frontend_extra: dict[str, str] | None = None,
) -> Stack:
    return start_stack(
        start,
        tmp_path,
        backend_env=tracing_env(backend, tmp_path, receiver, collector),
        frontend_env={
            **tracing_env(frontend, tmp_path, receiver, collector),
            **(frontend_extra or {}),
        },
    )


def root_of(response: httpx.Response) -> str:
    return response.headers["x-amzn-trace-id"].split(";")[0].removeprefix("Root=")


def expected_backend_calls(responses: list[httpx.Response]) -> int:
    # Every page makes two backend calls (gather fan-out), every post one.
    return sum(1 if r.request.method == "POST" else 2 for r in responses)


# What the awsxray exporter reads from each span (its translator's http.go,
# segment.go and sql.go): the http block, the client's address, the sql block.
SERVER_ATTRIBUTES = {
    "http.request.method",
    "url.full",
    "user_agent.original",
    "network.peer.address",
    "http.response.status_code",
}
CLIENT_ATTRIBUTES = {"http.request.method", "url.full", "http.response.status_code"}
SQL_ATTRIBUTES = {"db.system", "db.name", "db.connection_string", "db.statement"}


def test_each_request_is_one_trace_and_the_last_spans_arrive_after_sigterm(
    start: StartService,
    tmp_path: Path,
    receiver: OtlpReceiver,
    collector: SegmentCollector,
) -> None:
    stack = start_mixed(start, tmp_path, receiver, collector, frontend="otel", backend="otel")
    responses = asyncio.run(drive(stack.frontend.url, 24))
    assert all(r.status_code in (200, 303) for r in responses)
    # The batch processor's periodic export is off (OTEL_BSP_SCHEDULE_DELAY),
    # so the spans can only be here because the shutdown flushed them.
    assert stack.frontend.stop() == 0
    assert stack.backend.stop() == 0
    calls = expected_backend_calls(responses)
    assert receiver.bad_requests == []
    spans = receiver.spans
    assert collector.segments == []  # nothing went to the X-Ray daemon

    servers = {(s["service"], s["span_id"]): s for s in spans if s["kind"] == "SERVER"}
    front = [s for s in servers.values() if s["service"] == "frontend"]
    back = {s["parent_span_id"]: s for s in servers.values() if s["service"] == "backend"}
    clients = {s["span_id"]: s for s in spans if s["kind"] == "CLIENT"}
    assert len(front) == 24
    assert len(back) == calls
    by_trace = {s["trace_id"]: s for s in front}
    for response in responses:
        root = root_of(response)
        assert TRACE_ID.match(root)
        server = by_trace[root]
        assert server["parent_span_id"] is None
        assert server["attributes"]["http.request.method"] == response.request.method
        assert server["attributes"]["http.response.status_code"] == response.status_code
        # The route is in the span's name; the attributes are those the
        # collector's awsxray exporter maps to the segment, no others.
        assert server["name"] == f"{response.request.method} {response.request.url.path}"
        assert server["attributes"].keys() == SERVER_ATTRIBUTES
        assert server["attributes"]["url.full"] == str(response.request.url)
        assert server["attributes"]["user_agent.original"].startswith("python-httpx")
        # The peer's address (not forwarded): X-Ray's client_ip, no x_forwarded_for.
        assert server["attributes"]["network.peer.address"] == "127.0.0.1"
        calls_out = [
            c
            for c in clients.values()
            if c["parent_span_id"] == server["span_id"] and c["service"] == "frontend"
        ]
        assert len(calls_out) == (1 if response.request.method == "POST" else 2)
        queries = []
        for call in calls_out:
            assert call["trace_id"] == root
            # A remote subsegment named for the called host (the service map's node).
            assert call["name"] == httpx.URL(stack.backend.url).host
            assert call["attributes"].keys() == CLIENT_ATTRIBUTES
            assert call["attributes"]["url.full"].startswith(f"{stack.backend.url}/v1/")
            backend = back[call["span_id"]]  # the backend's span is the call's child
            assert backend["trace_id"] == root
            assert (
                backend["attributes"]["http.response.status_code"]
                == call["attributes"]["http.response.status_code"]
            )
            statements = [c for c in clients.values() if c["parent_span_id"] == backend["span_id"]]
            assert all(c["attributes"].keys() == SQL_ATTRIBUTES for c in statements)
            queries += [c["attributes"]["db.statement"] for c in statements]
        # Database calls are the backend spans' children.
        if response.request.method == "POST":
            assert any(q.startswith("INSERT INTO items") for q in queries), queries
        else:
            assert any(q.startswith("SELECT") for q in queries), queries

    # Log lines carry the same X-Ray trace id as the spans.
    for service in (stack.frontend, stack.backend):
        traces = {line["trace_id"] for line in service.access_lines()}
        assert traces <= by_trace.keys()
    assert {line["trace_id"] for line in stack.frontend.access_lines()} == by_trace.keys()


def test_incoming_header_and_unsampled_requests(
    start: StartService,
    tmp_path: Path,
    receiver: OtlpReceiver,
    collector: SegmentCollector,
) -> None:
    # The frontend follows an incoming decision only from a trusted upstream
    # (XRAY_TRUST_INCOMING_SAMPLING; off by default at the public edge).
    stack = start_mixed(
        start,
        tmp_path,
        receiver,
        collector,
        frontend="otel",
        backend="otel",
        frontend_extra={"XRAY_TRUST_INCOMING_SAMPLING": "true"},
    )
    root, parent = "1-5759e988-bd862e3fe1be46a994272793", "53995c3f42cd8ad8"
    sampled = httpx.get(
        f"{stack.frontend.url}/items",
        headers={
            "X-Amzn-Trace-Id": f"Root={root};Parent={parent};Sampled=?",
            "X-Forwarded-For": "203.0.113.9, 10.0.0.1",
        },
    )
    assert sampled.headers["x-amzn-trace-id"] == f"Root={root};Sampled=1"
    # A Root without Parent (what a load balancer sends) keeps its trace id.
    lb_root = "1-5759e988-0000000000000000000000bb"
    from_lb = httpx.get(
        f"{stack.frontend.url}/items", headers={"X-Amzn-Trace-Id": f"Root={lb_root}"}
    )
    assert from_lb.headers["x-amzn-trace-id"] == f"Root={lb_root}"
    unsampled_root = "1-5759e988-00000000000000000000abcd"
    unsampled = httpx.get(
        f"{stack.frontend.url}/items",
        headers={
            "X-Amzn-Trace-Id": f"Root={unsampled_root};Sampled=0",
            "X-Request-Id": "unsampled-1",
        },
    )
    assert unsampled.status_code == 200
    assert unsampled.headers["x-amzn-trace-id"] == f"Root={unsampled_root}"
    stack.frontend.stop()
    stack.backend.stop()

    assert {s["trace_id"] for s in receiver.spans} == {root, lb_root}
    fronts = {
        s["trace_id"]: s
        for s in receiver.spans
        if s["service"] == "frontend" and s["kind"] == "SERVER"
    }
    assert len(fronts) == 2
    assert fronts[root]["parent_span_id"] == parent
    # From X-Forwarded-For: no peer address, so X-Ray marks it x_forwarded_for.
    # TRUSTED_PROXIES=1: the entry the load balancer appended, not what the client wrote.
    assert fronts[root]["attributes"]["client.address"] == "10.0.0.1"
    assert "network.peer.address" not in fronts[root]["attributes"]
    assert fronts[lb_root]["attributes"]["network.peer.address"] == "127.0.0.1"
    assert "client.address" not in fronts[lb_root]["attributes"]
    assert fronts[lb_root]["parent_span_id"] is None
    for service in (stack.frontend, stack.backend):
        lines = [r for r in service.access_lines() if r["request_id"] == "unsampled-1"]
        assert lines
        assert {r["trace_id"] for r in lines} == {unsampled_root}


@pytest.mark.parametrize(("frontend", "backend"), [("otel", "xray-sdk"), ("xray-sdk", "otel")])
def test_mixed_backends_join_one_trace(
    start: StartService,
    tmp_path: Path,
    receiver: OtlpReceiver,
    collector: SegmentCollector,
    frontend: str,
    backend: str,
) -> None:
    stack = start_mixed(start, tmp_path, receiver, collector, frontend=frontend, backend=backend)
    responses = asyncio.run(drive(stack.frontend.url, 9))
    assert all(r.status_code in (200, 303) for r in responses)
    calls = expected_backend_calls(responses)
    stack.frontend.stop()
    stack.backend.stop()
    segments = collector.wait_for(9 if frontend == "xray-sdk" else calls)

    # (trace id, id of the frontend's call) of every backend call, and the
    # backend's (trace id, parent id) of every request it served.
    made: set[tuple[str, str]] = set()
    served: set[tuple[str, str]] = set()
    roots = {root_of(r) for r in responses}
    if frontend == "otel":
        made = {
            (s["trace_id"], s["span_id"])
            for s in receiver.spans
            if s["service"] == "frontend" and s["kind"] == "CLIENT"
        }
        served = {(s["trace_id"], s["parent_id"]) for s in segments if s["name"] == "backend"}
        front_traces = {
            s["trace_id"]
            for s in receiver.spans
            if s["service"] == "frontend" and s["kind"] == "SERVER"
        }
    else:
        made = {
            (segment["trace_id"], sub["id"])
            for segment in segments
            if segment["name"] == "frontend"
            for sub in segment.get("subsegments", [])
            if sub.get("namespace") == "remote"
        }
        served = {
            (s["trace_id"], s["parent_span_id"])
            for s in receiver.spans
            if s["service"] == "backend" and s["kind"] == "SERVER"
        }
        front_traces = {s["trace_id"] for s in segments if s["name"] == "frontend"}
    assert front_traces == roots
    assert len(made) == calls
    assert served == made


def test_unknown_tracing_backend_is_refused_at_start(start: StartService) -> None:
    service = start("frontend", env={"TRACING_BACKEND": "zipkin"}, wait=False)
    assert service.wait(30) == 2
    (line,) = service.log_lines()
    assert line["event"] == "invalid configuration"
    assert [e["variable"] for e in line["errors"]] == ["TRACING_BACKEND"]


ARN_PREFIX = "arn:aws:xray:us-west-2:123456789012:sampling-rule/"


class SamplingApi:
    """X-Ray's sampling API (GetSamplingRules, GetSamplingTargets) on loopback.

    Stands in for what the X-Ray daemon or the collector's ``awsproxy``
    forwards to X-Ray (moto has no sampling API). The rules: every
    ``GET /v1/items`` traced (rate 1), nothing else (the default rule, rate 0),
    in the response shapes of X-Ray's API reference (``SamplingRuleRecords``,
    ``SamplingTargetDocuments``).
    """

    RULES = (
        {
            "RuleName": "items",
            "Priority": 1,
            "FixedRate": 1.0,
            "HTTPMethod": "GET",
            "URLPath": "/v1/items",
        },
        {
            "RuleName": "Default",
            "Priority": 10000,
            "FixedRate": 0.0,
            "HTTPMethod": "*",
            "URLPath": "*",
        },
    )

    def __init__(self) -> None:
        import http.server  # noqa: PLC0415 - test helper only
        import threading  # noqa: PLC0415

        api = self
        self.calls: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                api.calls.append(self.path)
                if self.path == "/GetSamplingRules":
                    body: dict[str, object] = {
                        "SamplingRuleRecords": [
                            {
                                "SamplingRule": {
                                    **rule,
                                    "RuleARN": f"{ARN_PREFIX}{rule['RuleName']}",
                                    "ResourceARN": "*",
                                    "ReservoirSize": 0,
                                    "ServiceName": "*",
                                    "ServiceType": "*",
                                    "Host": "*",
                                    "Version": 1,
                                    "Attributes": {},
                                },
                                "CreatedAt": 1.7e9,
                                "ModifiedAt": 1.7e9,
                            }
                            for rule in api.RULES
                        ]
                    }
                else:
                    body = {
                        "SamplingTargetDocuments": [],
                        "LastRuleModification": 1.7e9,
                        "UnprocessedStatistics": [],
                    }
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("backend", ["otel", "xray-sdk"])
def test_centralized_sampling_decides_on_both_paths(
    start: StartService,
    tmp_path: Path,
    receiver: OtlpReceiver,
    collector: SegmentCollector,
    backend: str,
) -> None:
    # The local rules never trace: what is traced is X-Ray's rules' doing.
    never = rules_file(tmp_path, NO_SAMPLING_RULES)
    api = SamplingApi()
    try:
        service = start(
            "backend",
            env={
                "TRACING_BACKEND": backend,
                "XRAY_CENTRALIZED_SAMPLING": "true",
                "XRAY_SAMPLING_RULES": str(never),
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                # Sampling calls over TCP to the API, segments over UDP to the collector.
                "AWS_XRAY_DAEMON_ADDRESS": f"tcp:{api.address} udp:{collector.address}",
            },
        )
        # The rule poller starts with the first decision; until its rules are
        # in, the local file decides (nothing traced).
        deadline = time.monotonic() + 30
        while "/GetSamplingRules" not in api.calls and time.monotonic() < deadline:
            httpx.get(f"{service.url}/v1/items")
            time.sleep(0.2)
        assert "/GetSamplingRules" in api.calls
        time.sleep(0.5)
        traced = [httpx.get(f"{service.url}/v1/items") for _ in range(5)]
        untraced = [httpx.get(f"{service.url}/v1/notifications/count") for _ in range(5)]
        assert all(r.status_code == 200 for r in traced + untraced)
        assert service.stop() == 0
    finally:
        api.close()
    roots = {root_of(r) for r in traced}
    if backend == "otel":
        servers = [s for s in receiver.spans if s["kind"] == "SERVER"]
        paths = {s["attributes"]["url.full"].rsplit(":", 1)[-1] for s in servers}
        recorded = {s["trace_id"] for s in servers}
    else:
        segments = collector.wait_for(5)
        paths = {s["http"]["request"]["url"].rsplit(":", 1)[-1] for s in segments}
        recorded = {s["trace_id"] for s in segments}
    assert roots <= recorded
    assert not {root_of(r) for r in untraced} & recorded
    assert {p.split("/", 1)[-1] for p in paths} == {"v1/items"}
