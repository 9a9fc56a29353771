"""Every private API of a dependency that servicekit's tracing and routes use, one test each.

The packages are bounded below their next minor release in
``servicekit/pyproject.toml``; a patch release may still move a private name.
When one of these fails, the message names the hook and the module that
relies on it: fix that module (or find the public API that replaced the hook)
before taking the upgrade. The HTTP edge's hooks into uvicorn and httptools
are checked beside the edge's own tests.
"""

from __future__ import annotations

import inspect
import threading
from pathlib import Path

import pytest
from aws_xray_sdk.core.context import Context
from aws_xray_sdk.core.sampling.rule_poller import RulePoller
from aws_xray_sdk.core.sampling.sampler import DefaultSampler
from aws_xray_sdk.core.sampling.target_poller import TargetPoller
from fastapi import APIRouter

from servicekit.sampling_centralized import StoppableSampler
from servicekit.tracing_xray import OrjsonUDPEmitter


def test_xray_context_is_subsegment() -> None:
    assert callable(getattr(Context, "_is_subsegment", None)), (
        "aws_xray_sdk Context._is_subsegment is gone: servicekit.tracing_xray."
        "ContextVarContext calls it"
    )


def test_xray_udp_emitter_socket_and_public_address() -> None:
    emitter = OrjsonUDPEmitter("127.0.0.1:2000")
    assert hasattr(emitter, "_socket"), (
        "aws_xray_sdk UDPEmitter._socket is gone: servicekit.tracing_xray.OrjsonUDPEmitter "
        "sends on it"
    )
    assert (emitter.ip, emitter.port) == ("127.0.0.1", 2000), (
        "aws_xray_sdk UDPEmitter.ip/.port changed: OrjsonUDPEmitter sends to them"
    )
    emitter._socket.close()


@pytest.mark.parametrize(
    ("owner", "hooks", "kind"),
    [
        (DefaultSampler, ("_lock", "_started", "_rule_poller", "_target_poller"), "attribute"),
        (RulePoller, ("_time_elapsed", "_time_to_wait"), "attribute"),
        (RulePoller, ("_refresh_cache", "_reset_time_to_wait"), "method"),
        (TargetPoller, ("_interval",), "attribute"),
        (TargetPoller, ("_do_work", "_get_jitter"), "method"),
    ],
)
def test_xray_centralized_sampler_poller_state(
    owner: type, hooks: tuple[str, ...], kind: str
) -> None:
    sampler = DefaultSampler()
    instances = {
        DefaultSampler: sampler,
        RulePoller: sampler._rule_poller,
        TargetPoller: sampler._target_poller,
    }
    instance = instances[owner]
    for hook in hooks:
        value = getattr(instance, hook, None)
        ok = callable(value) if kind == "method" else value is not None
        assert ok, (
            f"aws_xray_sdk {owner.__name__}.{hook} ({kind}) is gone: "
            "servicekit.sampling_centralized.StoppableSampler drives the pollers with it"
        )


def test_xray_sampler_lock_is_a_lock() -> None:
    sampler = StoppableSampler()
    assert isinstance(sampler._lock, type(threading.Lock())), (
        "aws_xray_sdk DefaultSampler._lock is no longer a lock: StoppableSampler.start holds it"
    )


def test_otlp_exporter_transport_argument() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    assert "_transport" in inspect.signature(OTLPSpanExporter.__init__).parameters, (
        "OTLPSpanExporter(_transport=...) is gone: servicekit.tracing_otel.configure "
        "passes the urllib3 transport with it"
    )


def test_otlp_urllib3_transport_module() -> None:
    try:
        from opentelemetry.exporter.http.transport._urllib3 import (  # noqa: PLC0415
            Urllib3HTTPTransport,
        )
    except ImportError as exc:  # pragma: no cover - the failure this test reports
        pytest.fail(
            "opentelemetry.exporter.http.transport._urllib3.Urllib3HTTPTransport is gone: "
            f"servicekit.tracing_otel.configure uses it ({exc})"
        )
    assert callable(Urllib3HTTPTransport)


def test_otlp_exporter_client_and_shutdown_flag() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
    assert getattr(exporter, "_shutdown", None) is False, (
        "OTLPSpanExporter._shutdown is gone: servicekit.tracing_otel.WireOTLPSpanExporter reads it"
    )
    export = getattr(getattr(exporter, "_client", None), "export", None)
    assert callable(export), (
        "OTLPSpanExporter._client.export is gone: servicekit.tracing_otel."
        "WireOTLPSpanExporter sends its encoded batches with it"
    )
    assert list(inspect.signature(export).parameters) == ["data"], (
        "OTLPSpanExporter._client.export(data) changed: WireOTLPSpanExporter passes the bytes"
    )
    exporter.shutdown()


def test_xray_recorder_runtime_context() -> None:
    from aws_xray_sdk.core.recorder import AWSXRayRecorder  # noqa: PLC0415

    recorder = AWSXRayRecorder()
    assert isinstance(getattr(recorder, "_aws_metadata", None), dict), (
        "aws_xray_sdk AWSXRayRecorder._aws_metadata is gone: "
        "servicekit.tracing_xray.share_runtime_context reads it"
    )
    assert hasattr(recorder, "_origin"), (
        "aws_xray_sdk AWSXRayRecorder._origin is gone: share_runtime_context reads it"
    )
    populate = getattr(AWSXRayRecorder, "_populate_runtime_context", None)
    assert callable(populate), (
        "aws_xray_sdk AWSXRayRecorder._populate_runtime_context is gone: "
        "share_runtime_context replaces it on the recorder"
    )
    assert list(inspect.signature(populate).parameters) == [
        "self",
        "segment",
        "sampling_decision",
    ], "AWSXRayRecorder._populate_runtime_context changed: share_runtime_context matches it"


def test_fastapi_router_low_priority_routes(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<p>app</p>")
    router = APIRouter()
    assert getattr(router, "_low_priority_routes", None) == [], (
        "fastapi APIRouter._low_priority_routes is gone: servicekit.routes.declares_only_routes "
        "reads it, to include a router with frontend routes the usual way"
    )
    router.frontend("/app", directory=tmp_path)
    assert router.routes == []
    assert len(router._low_priority_routes) == 1
