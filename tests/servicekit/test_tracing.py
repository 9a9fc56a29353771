"""Tracing of requests and calls out: segments per request, subsegments where they ran."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.ext.util import calculate_sampling_decision
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import Field

from servicekit import sampling_rules, tracing_xray
from servicekit import tracing as servicekit_tracing
from servicekit.app import create_service_app
from servicekit.sampling_centralized import STOP_TIMEOUT_SECONDS, StoppableSampler
from servicekit.settings import ServiceSettings
from servicekit.trace_header import TraceHeader
from servicekit.tracing import configure_tracing, shutdown_tracing
from tests.support import (
    NO_SAMPLING_RULES,
    OtlpReceiver,
    SegmentCollector,
    free_port,
    rules_file,
    sample_all_rules,
)


class TracedSettings(ServiceSettings):
    service_name: str = "traced"
    port: int = Field(default=0)


def traced_app(settings: TracedSettings) -> FastAPI:
    app = create_service_app(settings, title="traced")

    @app.get("/fan-out")
    async def fan_out() -> dict[str, int]:
        async def call(n: int) -> int:
            async with xray_recorder.in_subsegment_async(f"call-{n}"):
                await asyncio.sleep(0.01 * (3 - n))
                async with xray_recorder.in_subsegment_async(f"inner-{n}"):
                    await asyncio.sleep(0)
            return n

        results = await asyncio.gather(*(call(n) for n in range(3)))
        return {"calls": len(results)}

    @app.get("/sync")
    def sync_endpoint() -> dict[str, str]:
        with xray_recorder.in_subsegment("in-thread-pool"):
            pass
        return {"ran": "in a worker thread"}

    return app


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, SegmentCollector]]:
    rules = rules_file(tmp_path, sample_all_rules(), "rules.json")
    with SegmentCollector() as collector:
        settings = TracedSettings(xray_daemon_address=collector.address, xray_sampling_rules=rules)
        with TestClient(traced_app(settings)) as test_client:
            yield test_client, collector


def test_gather_keeps_each_task_subsegments_apart(
    client: tuple[TestClient, SegmentCollector],
) -> None:
    test_client, collector = client
    response = test_client.get("/fan-out")
    assert response.status_code == 200
    (segment,) = collector.wait_for(1)
    calls = {sub["name"]: sub for sub in segment["subsegments"]}
    assert set(calls) == {"call-0", "call-1", "call-2"}
    for n in range(3):
        assert [inner["name"] for inner in calls[f"call-{n}"]["subsegments"]] == [f"inner-{n}"]


def test_sync_endpoints_in_the_thread_pool_are_traced(
    client: tuple[TestClient, SegmentCollector],
) -> None:
    test_client, collector = client
    assert test_client.get("/sync").status_code == 200
    (segment,) = collector.wait_for(1)
    assert [sub["name"] for sub in segment["subsegments"]] == ["in-thread-pool"]


def test_segment_records_request_and_response(
    client: tuple[TestClient, SegmentCollector],
) -> None:
    test_client, collector = client
    response = test_client.get("/missing", headers={"User-Agent": "probe/1"})
    assert response.status_code == 404
    (segment,) = collector.wait_for(1)
    assert segment["name"] == "traced"
    assert segment["http"]["request"]["method"] == "GET"
    assert segment["http"]["request"]["url"].endswith("/missing")
    assert segment["http"]["request"]["user_agent"] == "probe/1"
    assert segment["http"]["response"]["status"] == 404
    assert segment["error"] is True
    root = response.headers["x-amzn-trace-id"].removeprefix("Root=")
    assert segment["trace_id"] == root


def test_a_new_trace_s_id_is_made_without_a_system_call(
    client: tuple[TestClient, SegmentCollector], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK's TraceId reads os.urandom; the service makes a new trace's id
    # as it does for unsampled requests (servicekit.trace_header.new_trace_id).
    def refuse(*_: object) -> None:
        raise AssertionError("TraceId() made by the SDK")

    monkeypatch.setattr("aws_xray_sdk.core.models.traceid.TraceId.__init__", refuse)
    test_client, collector = client
    roots = [test_client.get("/missing").headers["x-amzn-trace-id"] for _ in range(2)]
    segments = collector.wait_for(2)
    assert sorted(segment["trace_id"] for segment in segments) == sorted(
        root.removeprefix("Root=") for root in roots
    )
    for segment in segments:
        assert re.fullmatch(r"1-[0-9a-f]{8}-[0-9a-f]{24}", segment["trace_id"])
    assert roots[0] != roots[1]


def test_health_checks_are_not_sampled(client: tuple[TestClient, SegmentCollector]) -> None:
    test_client, collector = client
    test_client.get("/healthz")
    test_client.get("/readyz")
    assert collector.wait_for(1, timeout=0.5) == []


def test_unsampled_requests_send_nothing_and_recorder_calls_still_work(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rules = rules_file(tmp_path, NO_SAMPLING_RULES)
    with SegmentCollector() as collector:
        settings = TracedSettings(xray_daemon_address=collector.address, xray_sampling_rules=rules)
        with TestClient(traced_app(settings)) as test_client:
            assert test_client.get("/fan-out").status_code == 200
            assert test_client.get("/sync").status_code == 200
            response = test_client.get(
                "/fan-out",
                headers={"X-Amzn-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=?"},
            )
        assert collector.wait_for(1, timeout=0.5) == []
    assert (
        response.headers["x-amzn-trace-id"] == "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0"
    )
    assert not [r for r in caplog.records if "cannot find the current segment" in r.getMessage()]


@pytest.mark.parametrize(
    ("incoming", "answered"),
    [
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=?", ";Sampled=1"),
        ("Root=1-5759e988-bd862e3fe1be46a994272793", ""),
    ],
)
def test_sampled_response_header_tells_the_decision_only_when_asked(
    client: tuple[TestClient, SegmentCollector], incoming: str, answered: str
) -> None:
    test_client, collector = client
    response = test_client.get("/fan-out", headers={"X-Amzn-Trace-Id": incoming})
    assert response.headers["x-amzn-trace-id"] == (
        "Root=1-5759e988-bd862e3fe1be46a994272793" + answered
    )
    assert collector.wait_for(1)[0]["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"


def test_preload_leaves_no_botocore_client_behind_and_import_alone_changes_nothing() -> None:
    # In a fresh interpreter: importing servicekit.tracing_xray leaves the SDK's
    # global recorder as the SDK made it; the entry point's preload() then drops
    # the import-time centralized sampler and its botocore X-Ray client.
    probe = """
import gc
import servicekit.tracing_xray
from aws_xray_sdk.core import xray_recorder
from botocore.client import BaseClient
def clients(): return len([o for o in gc.get_objects() if isinstance(o, BaseClient)])
print(type(xray_recorder.sampler).__name__)
import servicekit.tracing
servicekit.tracing.preload()
print(type(xray_recorder.sampler).__name__, clients())
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["DefaultSampler", "LocalSampler", "0"]


def test_preload_reads_the_backend_as_the_settings_do() -> None:
    # Variable names are case-insensitive for the settings: preload reads the
    # same field, so a lower-case name selects the same implementation.
    probe = """
import sys
import servicekit.tracing
servicekit.tracing.preload()
print("opentelemetry.sdk.trace" in sys.modules, "aws_xray_sdk" in sys.modules)
"""
    env = {k: v for k, v in os.environ.items() if k.upper() != "TRACING_BACKEND"}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**env, "tracing_backend": "otel"},
    )
    assert done.stdout.split() == ["True", "False"]


@pytest.mark.parametrize(
    ("backend", "loaded", "not_loaded"),
    [
        # (FastAPI imports the OpenTelemetry API itself, not the SDK.)
        ("xray-sdk", "aws_xray_sdk", ("opentelemetry.sdk", "google.protobuf")),
        ("otel", "opentelemetry.sdk", ("aws_xray_sdk", "botocore", "requests")),
    ],
)
def test_only_the_selected_implementation_is_imported(
    backend: str, loaded: str, not_loaded: tuple[str, ...]
) -> None:
    # A service process as its __main__ starts it: preload, the app, then
    # tracing configured in the lifespan and one traced request.
    probe = """
import sys
import servicekit.tracing
servicekit.tracing.preload()
from fastapi.testclient import TestClient
from servicekit.app import create_service_app
from servicekit.settings import ServiceSettings
settings = ServiceSettings(service_name="probe", port=0)
with TestClient(create_service_app(settings, title="probe")) as client:
    client.get("/healthz")
print(" ".join(sys.modules))
"""
    env = {**os.environ, "TRACING_BACKEND": backend, "AWS_XRAY_SDK_ENABLED": "true"}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    modules = done.stdout.split()
    assert loaded in modules
    for name in not_loaded:
        found = [m for m in modules if m == name or m.startswith(f"{name}.")]
        assert not found, f"TRACING_BACKEND={backend} imported {found[:5]}"


@pytest.mark.parametrize(
    ("centralized", "sampler"), [(True, "StoppableSampler"), (False, "RulesSampler")]
)
def test_centralized_sampling_is_a_switch(centralized: bool, sampler: str) -> None:
    try:
        configure_tracing(TracedSettings(xray_centralized_sampling=centralized))
        assert type(xray_recorder.sampler).__name__ == sampler
    finally:
        configure_tracing(TracedSettings())


@pytest.mark.parametrize("path", ["tracer", "sdk"])
def test_the_x_ray_path_samples_with_the_local_rules(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    # The rules of servicekit.sampling_rules (the OpenTelemetry path's too,
    # held against the SDK's LocalSampler in test_sampling_rules.py): as the
    # service middleware's tracer decides, and as the SDK's own decision
    # function does (which the tracer stands in for, and other SDK code calls).
    settings = TracedSettings()
    tracer = servicekit_tracing.request_tracer(settings)
    assert isinstance(tracer, tracing_xray.RequestTracer)

    def decide(incoming: TraceHeader, where: str) -> Any:
        request = {"host": "traced:8080", "method": "GET", "path": where, "service": "traced"}
        if path == "sdk":
            return calculate_sampling_decision(incoming, xray_recorder, request)
        return tracer.decide(incoming, "traced:8080", "GET", where)

    unknown = TraceHeader()
    try:
        configure_tracing(settings)
        assert not any(decide(unknown, "/readyz") for _ in range(50))
        monkeypatch.setattr(sampling_rules.time, "time", lambda: 2_000_000.0)
        decisions = [bool(decide(unknown, "/v1/items")) for _ in range(20_000)]
        assert decisions[0]  # the reservoir: the first request of the second
        assert 0.04 < sum(decisions[1:]) / 19_999 < 0.06
        trusted = TraceHeader(root="1-5759e988-bd862e3fe1be46a994272793", sampled=1)
        assert decide(trusted, "/readyz") == 1
        assert decide(TraceHeader(sampled=0), "/v1/items") == 0
    finally:
        configure_tracing(TracedSettings())


def test_shutdown_stops_the_centralized_samplers_pollers() -> None:
    # The SDK's own pollers run until the process exits; the service's end at shutdown.
    settings = TracedSettings(
        xray_centralized_sampling=True, xray_daemon_address=f"127.0.0.1:{free_port()}"
    )
    try:
        configure_tracing(settings)
        sampler = xray_recorder.sampler
        assert isinstance(sampler, StoppableSampler)
        sampler.should_trace({"service": "traced"})  # the first decision starts the pollers
        pollers = [t for t in threading.enumerate() if t.name.startswith("xray-")]
        assert sorted(t.name for t in pollers) == ["xray-rule-poller", "xray-target-poller"]
        shutdown_tracing()
        for thread in pollers:
            thread.join(STOP_TIMEOUT_SECONDS)
        assert [t.name for t in pollers if t.is_alive()] == []
    finally:
        configure_tracing(TracedSettings())


def test_unsampled_requests_never_reach_the_opentelemetry_sdk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unsampled request costs the API's non-recording span only: no SDK span, no export."""
    from opentelemetry.sdk.trace import Tracer  # noqa: PLC0415 - the OTel path's SDK

    started: list[str] = []
    start_span = Tracer.start_span

    def counting(self: Tracer, name: str, *args: Any, **kwargs: Any) -> Any:
        started.append(name)
        return start_span(self, name, *args, **kwargs)

    monkeypatch.setattr(Tracer, "start_span", counting)
    never = rules_file(tmp_path, NO_SAMPLING_RULES, "never.json")
    always = rules_file(tmp_path, sample_all_rules(), "always.json")
    with OtlpReceiver() as receiver:
        for rules, expected in ((never, 0), (always, 10)):
            settings = TracedSettings(
                tracing_backend="otel",
                xray_sampling_rules=rules,
                otel_exporter_otlp_endpoint=receiver.endpoint,
            )
            app = create_service_app(settings, title="plain")

            @app.get("/plain")
            async def plain() -> dict[str, str]:
                return {"ok": "yes"}

            with TestClient(app) as test_client:
                for _ in range(10):
                    response = test_client.get("/plain")
                    assert response.headers["x-amzn-trace-id"].startswith("Root=1-")
            assert len(started) == expected, rules.name
            started.clear()
        assert len([s for s in receiver.spans if s["kind"] == "SERVER"]) == 10


def test_otlp_encoding_groups_spans_without_serializing_the_resource_per_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporter's encoder hashes each span's resource; the service's is hashed once."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import (  # noqa: PLC0415
        encode_spans,
    )
    from opentelemetry.sdk import resources  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
        InMemorySpanExporter,
    )

    import servicekit.tracing_otel  # noqa: PLC0415 - the OTel path only

    with OtlpReceiver() as receiver:
        settings = TracedSettings(
            tracing_backend="otel",
            xray_sampling_rules=rules_file(tmp_path, sample_all_rules()),
            otel_exporter_otlp_endpoint=receiver.endpoint,
        )
        servicekit.tracing_otel.configure(settings)
        try:
            provider = servicekit.tracing_otel._State.provider
            assert provider is not None
            finished = InMemorySpanExporter()
            provider.add_span_processor(SimpleSpanProcessor(finished))
            tracer = provider.get_tracer("test")
            for n in range(20):
                tracer.start_span(f"span-{n}").end()
            dumped: list[object] = []
            dumps = resources.dumps

            def counting(*args: Any, **kwargs: Any) -> str:
                dumped.append(args[0])
                return dumps(*args, **kwargs)

            monkeypatch.setattr(resources, "dumps", counting)
            (resource_spans,) = encode_spans(finished.get_finished_spans()).resource_spans
        finally:
            servicekit.tracing_otel.shutdown()
    assert len(resource_spans.scope_spans[0].spans) == 20
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == settings.service_name
    assert dumped == []


@pytest.mark.parametrize("on_ecs", [False, True], ids=["local", "on-ecs"])
@pytest.mark.parametrize("decision", [1, "centralized-rule"], ids=["local-rules", "rule-name"])
def test_segments_get_the_sdks_runtime_context_without_its_deep_copy(
    tmp_path: Path, on_ecs: bool, decision: int | str
) -> None:
    """The recorder's ``aws`` block, origin and service, as the SDK's own method sets them."""
    from aws_xray_sdk.core.models.segment import Segment  # noqa: PLC0415
    from aws_xray_sdk.core.recorder import AWSXRayRecorder  # noqa: PLC0415

    metadata_uri = "http://169.254.170.2/v4/task" if on_ecs else None
    settings = TracedSettings(
        xray_sampling_rules=rules_file(tmp_path, sample_all_rules()),
        ecs_container_metadata_uri_v4=metadata_uri,
    )
    tracing_xray.configure(settings)
    try:
        ours, sdks, another = Segment("traced"), Segment("traced"), Segment("traced")
        xray_recorder._populate_runtime_context(ours, decision)
        xray_recorder._populate_runtime_context(another, 1)
        AWSXRayRecorder._populate_runtime_context(xray_recorder, sdks, decision)
        assert ours.aws == sdks.aws
        assert ours.aws["xray"]["sdk"] == "X-Ray for Python"
        assert ("ecs" in ours.aws) is on_ecs
        assert ours.service == sdks.service
        assert getattr(ours, "origin", None) == getattr(sdks, "origin", None)
        assert (getattr(ours, "origin", None) == "AWS::ECS::Container") is on_ecs
        # What one segment writes stays in it.
        ours.set_rule_name("written-later")
        assert "sampling_rule_name" not in another.aws["xray"]
        assert "sampling_rule_name" not in xray_recorder._aws_metadata["xray"]
    finally:
        tracing_xray.release_import_time_sampler()
