"""servicekit.otlp_wire against the reference: the OTLP exporter's own encoder.

Each test finishes real spans with the OpenTelemetry SDK (a tracer provider,
a span processor handing the finished spans over, as the batch processor
hands them to the exporter) and checks that the bytes ``encode_request``
writes parse, with the OTLP protobuf classes (opentelemetry-proto), to a
message equal to the one the exporter's ``encode_spans`` builds from the same
spans. The last tests send a batch through ``WireOTLPSpanExporter`` to a real
OTLP/HTTP endpoint on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from servicekit.otlp_wire import encode_request
from servicekit.tracing_otel import WireOTLPSpanExporter, service_resource
from tests.support import OtlpReceiver

REMOTE_PARENT = SpanContext(
    0x0123456789ABCDEF0123456789ABCDEF,
    0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "value"), ("other", "x")]),
)


@pytest.fixture
def finished() -> InMemorySpanExporter:
    """Keeps the finished spans, as the batch processor hands them to an exporter."""
    return InMemorySpanExporter()


def provider(
    finished: InMemorySpanExporter,
    resource: Resource | None = None,
    limits: SpanLimits | None = None,
) -> TracerProvider:
    tracer_provider = TracerProvider(
        resource=resource or service_resource("frontend", on_ecs=False), span_limits=limits
    )
    tracer_provider.add_span_processor(SimpleSpanProcessor(finished))
    return tracer_provider


def assert_encoded_as_the_exporter_does(spans: Sequence[ReadableSpan]) -> None:
    ours = ExportTraceServiceRequest.FromString(encode_request(spans))
    reference = encode_spans(spans)
    assert ours == reference, f"ours:\n{ours}\nthe exporter's:\n{reference}"


def test_the_services_spans(finished: InMemorySpanExporter) -> None:
    """A server span and a client span with the attributes tracing_otel gives them."""
    tracer = provider(finished).get_tracer("servicekit.tracing")
    server = tracer.start_span(
        "GET",
        context=set_span_in_context(NonRecordingSpan(REMOTE_PARENT)),
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "GET",
            "url.full": "http://127.0.0.1:8080/api/helloworld",
            "user_agent.original": "wrk/4.2.0",
            "network.peer.address": "127.0.0.1",
        },
    )
    call = tracer.start_span(
        "127.0.0.1",
        context=set_span_in_context(server),
        kind=SpanKind.CLIENT,
        attributes={"http.request.method": "GET", "url.full": "http://127.0.0.1:9/v1/helloworld"},
    )
    call.set_attribute("http.response.status_code", 200)
    call.end()
    server.set_attribute("http.response.status_code", 200)
    server.update_name("GET /api/helloworld")
    server.end()
    spans = finished.get_finished_spans()
    assert len(spans) == 2
    assert_encoded_as_the_exporter_does(spans)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "text",
        "ünïcödé ✓",
        "x" * 127,
        "x" * 128,  # the first length that takes two varint bytes
        "x" * 16_384,  # and three
        True,
        False,
        0,
        1,
        -1,
        2**63 - 1,
        -(2**63),
        0.0,
        -2.5,
        1e300,
        (),
        ("a", "", "ü"),
        (True, False),
        (0, -7, 2**40),
        (0.5, -1.0),
        ("a", None),
        float("inf"),
        float("-inf"),
        b"",
        b"\x00\xffbytes",
        "x" * (2 * 1024 * 1024),  # a four-byte length
        {},
        {"nested": {"deeper": [1, "two", None]}, "flag": False},
        (("a", "b"), (1,)),
        ("mixed", 1, 2.5, True),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_every_attribute_value_the_sdk_keeps(finished: InMemorySpanExporter, value: Any) -> None:
    tracer = provider(finished).get_tracer("t")
    tracer.start_span("span", attributes={"key": value, "after": "x"}).end()
    spans = finished.get_finished_spans()
    assert spans[0].attributes is not None
    assert "key" in spans[0].attributes  # the SDK kept it: this is a value it allows
    assert_encoded_as_the_exporter_does(spans)


def test_not_a_number(finished: InMemorySpanExporter) -> None:
    # NaN is not equal to itself, so the messages cannot be compared whole.
    provider(finished).get_tracer("t").start_span("span", attributes={"nan": float("nan")}).end()
    (ours,) = ExportTraceServiceRequest.FromString(
        encode_request(finished.get_finished_spans())
    ).resource_spans
    value = ours.scope_spans[0].spans[0].attributes[0].value
    assert value.WhichOneof("value") == "double_value"
    assert value.double_value != value.double_value


@pytest.mark.parametrize(
    "value",
    [2**63, -(2**63) - 1, 2**64 + 5, (1, 2**70), "lone surrogate \ud800", {"k": 2**64}],
    ids=repr,
)
def test_an_attribute_otlp_cannot_hold_is_left_out_as_the_exporter_does(
    finished: InMemorySpanExporter, value: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The span and its other attributes are exported; the exporter's encoder does the same."""
    span = provider(finished).get_tracer("t").start_span("span", attributes={"bad": value})
    span.set_attribute("kept", "yes")
    span.end()
    spans = finished.get_finished_spans()
    assert_encoded_as_the_exporter_does(spans)
    (ours,) = ExportTraceServiceRequest.FromString(encode_request(spans)).resource_spans
    assert [a.key for a in ours.scope_spans[0].spans[0].attributes] == ["kept"]
    assert "trace attribute dropped" in capsys.readouterr().out


def test_extreme_ids_times_and_empty_names(finished: InMemorySpanExporter) -> None:
    largest = SpanContext(2**128 - 1, 2**64 - 1, is_remote=True, trace_flags=TraceFlags(1))
    tracer = provider(finished).get_tracer("")
    span = tracer.start_span(
        "", context=set_span_in_context(NonRecordingSpan(largest)), start_time=0
    )
    span.end(end_time=2**64 - 1)
    assert_encoded_as_the_exporter_does(finished.get_finished_spans())


@pytest.mark.parametrize("kind", list(SpanKind))
def test_every_span_kind(finished: InMemorySpanExporter, kind: SpanKind) -> None:
    provider(finished).get_tracer("t").start_span("span", kind=kind).end()
    assert_encoded_as_the_exporter_does(finished.get_finished_spans())


@pytest.mark.parametrize(
    "status",
    [
        Status(StatusCode.UNSET),
        Status(StatusCode.OK),
        Status(StatusCode.ERROR),
        Status(StatusCode.ERROR, "ValueError"),
    ],
    ids=lambda s: f"{s.status_code.name}-{s.description}",
)
def test_every_status(finished: InMemorySpanExporter, status: Status) -> None:
    span = provider(finished).get_tracer("t").start_span("span")
    span.set_status(status)
    span.end()
    assert_encoded_as_the_exporter_does(finished.get_finished_spans())


def test_parents_local_and_remote_and_the_trace_state(finished: InMemorySpanExporter) -> None:
    tracer = provider(finished).get_tracer("t")
    remote_child = tracer.start_span(
        "remote child", context=set_span_in_context(NonRecordingSpan(REMOTE_PARENT))
    )
    local_child = tracer.start_span("local child", context=set_span_in_context(remote_child))
    local_child.end()
    remote_child.end()
    tracer.start_span("root").end()
    spans = finished.get_finished_spans()
    assert spans[1].context is not None
    assert spans[1].context.trace_state  # the caller's, carried on
    assert_encoded_as_the_exporter_does(spans)


def test_events_and_a_recorded_exception(finished: InMemorySpanExporter) -> None:
    span = provider(finished).get_tracer("t").start_span("span")
    span.add_event("plain")
    span.add_event("with attributes", {"count": 3, "where": "here", "flags": (True,)})
    try:
        raise ValueError("boom ✗")
    except ValueError as exc:
        span.record_exception(exc)
    span.end()
    spans = finished.get_finished_spans()
    assert len(spans[0].events) == 3
    assert_encoded_as_the_exporter_does(spans)


def test_links(finished: InMemorySpanExporter) -> None:
    local = SpanContext(0xABC, 0xDEF, is_remote=False)
    links = [Link(REMOTE_PARENT, {"reason": "retry", "attempt": 2}), Link(local)]
    provider(finished).get_tracer("t").start_span("span", links=links).end()
    assert_encoded_as_the_exporter_does(finished.get_finished_spans())


def test_dropped_attributes_of_events_and_links(finished: InMemorySpanExporter) -> None:
    limits = SpanLimits(max_event_attributes=1, max_link_attributes=1)
    span = (
        provider(finished, limits=limits)
        .get_tracer("t")
        .start_span("span", links=[Link(REMOTE_PARENT, {"a": 1, "b": 2, "c": 3})])
    )
    span.add_event("event", {"x": 1, "y": 2})
    span.end()
    spans = finished.get_finished_spans()
    readable = spans[0]
    assert readable.events[0].dropped_attributes == 1
    assert readable.links[0].dropped_attributes == 2
    assert_encoded_as_the_exporter_does(spans)


def test_what_the_limits_dropped_is_counted(finished: InMemorySpanExporter) -> None:
    limits = SpanLimits(max_span_attributes=2, max_events=1, max_links=1, max_event_attributes=1)
    span = (
        provider(finished, limits=limits)
        .get_tracer("t")
        .start_span(
            "span",
            attributes={"a": 1, "b": 2, "c": 3},
            links=[Link(REMOTE_PARENT), Link(REMOTE_PARENT)],
        )
    )
    span.add_event("first", {"x": 1, "y": 2})
    span.add_event("second")
    span.end()
    spans = finished.get_finished_spans()
    readable = spans[0]
    assert (readable.dropped_attributes, readable.dropped_events, readable.dropped_links) == (
        1,
        1,
        1,
    )
    assert_encoded_as_the_exporter_does(spans)


def test_several_resources_and_scopes_in_one_request(finished: InMemorySpanExporter) -> None:
    ours = provider(finished)
    theirs = provider(
        finished,
        resource=Resource.create(
            {
                "service.name": "backend",
                "aws.log.group.names": ("/ecs/sbcntr",),
                "pid": 7,
                "ratio": 0.5,
                "on": True,
                "ports": (80, 443),
            },
            schema_url="https://opentelemetry.io/schemas/1.21.0",
        ),
    )
    scoped = ours.get_tracer(
        "scoped", "1.2.3", schema_url="https://example.com/schema", attributes={"team": "web"}
    )
    for tracer in (ours.get_tracer("servicekit.tracing"), scoped, theirs.get_tracer("other")):
        tracer.start_span("one").end()
        tracer.start_span("one more").end()
    theirs.get_tracer("other").start_span("two").end()
    ours.get_tracer("servicekit.tracing").start_span("three").end()
    spans = finished.get_finished_spans()
    assert_encoded_as_the_exporter_does(spans)
    request = ExportTraceServiceRequest.FromString(encode_request(spans))
    assert [len(r.scope_spans) for r in request.resource_spans] == [2, 1]


def test_a_span_without_a_scope() -> None:
    # The SDK's tracers always give one; a ReadableSpan built by hand may not.
    span = ReadableSpan(
        "by hand",
        context=SpanContext(1, 1, is_remote=False),
        attributes={"key": "value"},
        start_time=1,
        end_time=2,
        resource=Resource.create({}),
    )
    assert span.instrumentation_scope is None
    assert_encoded_as_the_exporter_does([span])


def test_an_empty_batch_is_an_empty_request() -> None:
    assert encode_request([]) == b""
    assert_encoded_as_the_exporter_does([])


def test_a_span_not_yet_ended_is_refused(finished: InMemorySpanExporter) -> None:
    span = provider(finished).get_tracer("t").start_span("still running")
    assert isinstance(span, ReadableSpan)
    with pytest.raises(ValueError, match="finished span"):
        encode_request([span])


def test_a_value_without_an_otlp_field_is_left_out() -> None:
    # The SDK drops such a value before a span can hold it; a ReadableSpan
    # built by hand can still carry one.
    span = ReadableSpan(
        "by hand",
        context=SpanContext(1, 1, is_remote=False),
        attributes={"key": object(), "kept": 1},
        start_time=1,
        end_time=2,
        resource=Resource.create({}),
    )
    assert_encoded_as_the_exporter_does([span])


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as otlp:
        yield otlp


def exporter_to(receiver: OtlpReceiver) -> WireOTLPSpanExporter:
    return WireOTLPSpanExporter(
        endpoint=f"{receiver.endpoint}/v1/traces", timeout=5, _transport=Urllib3HTTPTransport()
    )


def test_the_exporter_posts_the_batch(
    receiver: OtlpReceiver, finished: InMemorySpanExporter
) -> None:
    tracer = provider(finished).get_tracer("servicekit.tracing")
    for n in range(3):
        tracer.start_span(f"span {n}", kind=SpanKind.SERVER, attributes={"n": n}).end()
    exporter = exporter_to(receiver)
    batch = finished.get_finished_spans()
    assert exporter.export(batch) is SpanExportResult.SUCCESS
    spans = receiver.wait_for(3)
    assert [(s["service"], s["name"], s["attributes"]["n"]) for s in spans] == [
        ("frontend", f"span {n}", n) for n in range(3)
    ]
    assert receiver.bad_requests == []
    exporter.shutdown()
    assert exporter.export(batch) is SpanExportResult.FAILURE
    assert receiver.requests == 1


def test_a_batch_it_cannot_encode_fails_and_is_not_sent(
    receiver: OtlpReceiver, finished: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    tracer = provider(finished).get_tracer("t")
    tracer.start_span("ended").end()
    running = tracer.start_span("not ended")
    assert isinstance(running, ReadableSpan)
    batch = [*finished.get_finished_spans(), running]
    assert exporter_to(receiver).export(batch) is SpanExportResult.FAILURE
    assert receiver.requests == 0
    assert "trace export failed" in capsys.readouterr().out


def test_a_refused_batch_fails() -> None:
    # Nothing listens on the endpoint: the exporter's own retries give up.
    exporter = WireOTLPSpanExporter(
        endpoint="http://127.0.0.1:9/v1/traces", timeout=0.5, _transport=Urllib3HTTPTransport()
    )
    span = ReadableSpan("s", context=SpanContext(1, 1, is_remote=False), start_time=1, end_time=2)
    assert exporter.export([span]) is SpanExportResult.FAILURE
