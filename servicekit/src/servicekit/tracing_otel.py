"""Tracing with OpenTelemetry and X-Ray ids, exported over OTLP to an ADOT collector.

The implementation behind :mod:`servicekit.tracing` when
``TRACING_BACKEND=otel``; that module imports this one only then, so the X-Ray
SDK path never loads the OpenTelemetry packages, and this path loads neither
the X-Ray SDK nor botocore. Everything is set up here, in plain sight (no
auto-instrumentation):

* the SDK's ``TracerProvider`` with ``AwsXRayIdGenerator`` (trace ids carry
  the start time, as X-Ray requires) and a batch processor exporting OTLP/HTTP
  to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the collector sidecar, port 4318);
* the sampling rules file of the X-Ray path, with the same decisions
  (:mod:`servicekit.sampling_rules`), or X-Ray's centralized rules through
  the collector when ``XRAY_CENTRALIZED_SAMPLING`` is on
  (:mod:`servicekit.sampling_centralized`); a caller's trusted
  ``Sampled=1|0`` is followed, as on the X-Ray path;
* ``X-Amzn-Trace-Id`` is read as on the X-Ray path
  (:mod:`servicekit.trace_header`: ``Sampled=?`` and a root without a parent,
  which the load balancer sends, are honoured; OpenTelemetry's
  ``AwsXRayPropagator`` refuses both and would start a new trace) and written
  as on the X-Ray path (:func:`servicekit.trace_header.call_trace_header`),
  so a service on this path and one on the X-Ray SDK path join one trace;
* :class:`RequestTracer` (server span per request, for the service's
  middleware, :mod:`servicekit.middleware`),
  :func:`trace_call` (client span per HTTP call out) and
  :func:`instrument_sqlalchemy` (client span per SQL statement) record what
  the X-Ray path records, under the attribute names the collector's
  ``awsxray`` exporter turns into segment fields, and nothing it would not
  use: each attribute is validated on the request path and encoded by the
  export thread, per span. The exporter's mapping (its translator's
  ``http.go``, ``segment.go`` and ``sql.go``): ``http.request.method``,
  ``url.full``, ``user_agent.original``, ``http.response.status_code`` give
  the ``http`` block; the client's address is ``client.address`` when it came
  from ``X-Forwarded-For`` (the segment's ``x_forwarded_for``) or
  ``network.peer.address`` when it is the peer's; a 5xx status (error status)
  is a fault, a 4xx an error; a client span is a ``remote`` subsegment named
  by the span (the called host, X-Ray's service map node); ``db.*`` give the
  ``sql`` block. The route is in the server span's name (``GET /items/{id}``),
  which the exporter does not read either (the segment is named by the
  service): an ``http.route`` attribute would only land in the segment's
  metadata, and ``server.address`` is read only when ``url.full`` is missing.

An unsampled request builds no recording span: the SDK hands out the API's
``NonRecordingSpan`` (one small object holding the ids), nothing is queued for
export, and outgoing calls only pass the trace id on (``Sampled=0``). A
sampled one sets its attributes in two calls (request facts, then response
facts), each validated once by the SDK.

The exporter's private API used here: the ``_transport`` argument of
``OTLPSpanExporter`` and the ``_urllib3`` module of
``opentelemetry-exporter-http-transport`` (the exporter's only way to choose
urllib3 over requests, until that is public), and the exporter's ``_client``
(its ``export(data)``) and ``_shutdown``, which :class:`WireOTLPSpanExporter`
sends through and reads. Both packages are bounded below
their next minor release, and ``tests/servicekit/test_private_hooks.py`` names
each hook when an upgrade removes it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.extension.aws.resource.ecs import AwsEcsResourceDetector
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.resources import Resource, get_aggregated_resources
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from starlette.types import Scope

from servicekit.asgi import call_url, client_facts, request_url
from servicekit.logs import get_logger, trace_id_var
from servicekit.otlp_wire import encode_request
from servicekit.sampling_rules import Decider, LocalRules
from servicekit.trace_header import (
    CALL_TRACE_HEADER,
    TRACE_HEADER,
    TraceHeader,
    call_trace_header,
    incoming_trace,
    new_trace_id,
    trace_id_int,
    trace_response_header,
    xray_trace_id,
)

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Link, TraceState
    from opentelemetry.util.types import Attributes
    from sqlalchemy.ext.asyncio import AsyncEngine

    from servicekit.settings import ServiceSettings

log = get_logger("servicekit.tracing")

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


class _State:
    """The process's provider, tracer and sampling rules, set by :func:`configure`."""

    provider: TracerProvider | None = None
    tracer: trace.Tracer | None = None
    rules: Decider | None = None


# What the middleware decided for the request whose server span is being
# started (the sampler follows it), and the caller's Root when it sent one
# without a Parent (the id generator keeps that trace id).
_request_decision: ContextVar[bool | None] = ContextVar("request_sampled", default=None)
_incoming_root: ContextVar[int | None] = ContextVar("incoming_xray_root", default=None)


class _IncomingRootIdGenerator(AwsXRayIdGenerator):
    """X-Ray trace ids; the caller's Root when it sent one without a Parent."""

    def generate_trace_id(self) -> int:
        root = _incoming_root.get()
        return root if root is not None else super().generate_trace_id()


class RulesSampler(Sampler):
    """The SDK's sampler: a span follows the decision of the request it belongs to.

    A span inside a traced request follows its parent. A request's server span
    follows the decision :class:`RequestTracer` made for it (the caller's
    trusted ``Sampled=1|0``, else the sampling rules on the request's host,
    method and path), so each request is decided once and an unsampled one
    never reaches the SDK. A span started outside any request is decided by
    the default rule.
    """

    def __init__(self, rules: Decider) -> None:
        self._rules = rules

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if parent.is_valid and not parent.is_remote:
            sampled = parent.trace_flags.sampled
        else:
            decision = _request_decision.get()
            sampled = self._rules.default_decision() if decision is None else decision
        if sampled:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return SamplingResult(Decision.DROP, None, trace_state)

    def get_description(self) -> str:
        return "XRayLocalRules"


class _FixedResource(Resource):
    """A resource whose hash is computed once.

    The OTLP encoder groups the spans of each batch by resource, hashing it for
    every span (``Resource.__hash__`` dumps its attributes as JSON each time);
    the process's resource never changes after :func:`configure`.
    """

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def service_resource(service_name: str, *, on_ecs: bool) -> Resource:
    """The resource every span of the process carries, hashed once.

    ``service.name`` (the X-Ray segment's name) and the SDK's own attributes;
    on ECS also the task's (the ``AwsEcsResourceDetector``: cluster, task ARN,
    launch type, which the awsxray exporter turns into the segment's origin).
    """
    resource = Resource.create({"service.name": service_name})
    if on_ecs:
        resource = get_aggregated_resources([AwsEcsResourceDetector()], initial_resource=resource)
    return _FixedResource(resource)


class WireOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, each batch encoded by :mod:`servicekit.otlp_wire`.

    The exporter's own: endpoint, headers, compression, timeout, retries with
    back-off, and its log line when a batch is refused or the retries run
    out. This class's: the encoding (the same request as the exporter's
    encoder, at less than half the CPU) and two log lines, ``trace export
    failed`` (a batch that could not be encoded) and ``trace export after
    shutdown``, in place of the exporter's. Left out: the exporter's own
    metrics (off unless ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``) and its
    cap on a request's size (64 MiB: at the default 512 spans per batch, each
    a few hundred bytes, a few kilobytes with an exception's stack trace, a
    batch stays far below it).
    """

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            log.warning("trace export after shutdown", spans=len(spans))
            return SpanExportResult.FAILURE
        try:
            data = encode_request(spans)
        except Exception as error:  # as the exporter's: the batch fails, logged
            log.error("trace export failed", spans=len(spans), error=repr(error))
            return SpanExportResult.FAILURE
        if self._client.export(data).success:
            return SpanExportResult.SUCCESS
        return SpanExportResult.FAILURE


def configure(settings: ServiceSettings) -> bool:
    """Build the provider, sampler and exporter from the settings; return True.

    Call it once, inside the running loop (the FastAPI lifespan). The provider
    is the module's own, not the process-wide global: nothing else in the
    process can replace it or record into it by accident.
    """
    rules: Decider = LocalRules.from_file(settings.xray_sampling_rules)
    if settings.xray_centralized_sampling:
        from servicekit.sampling_centralized import CentralizedRules  # noqa: PLC0415

        rules = CentralizedRules(settings)
    provider = TracerProvider(
        sampler=RulesSampler(rules),
        resource=service_resource(settings.service_name, on_ecs=settings.on_ecs),
        id_generator=_IncomingRootIdGenerator(),
        # Flushed by shutdown() in the lifespan, within the drain, not by an
        # interpreter exit hook after the logs are gone.
        shutdown_on_exit=False,
    )
    endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    # The exporter's HTTP client is urllib3 alone: its default, requests, loads
    # some 70 more modules (about 6 MB resident) for a plain POST to a sidecar
    # on loopback. The transport is passed with the exporter's ``_transport``
    # argument, the SDK's hook for choosing it until that is public
    # (tests/servicekit/test_tracing.py fails if requests is loaded again).
    exporter = WireOTLPSpanExporter(endpoint=endpoint, _transport=Urllib3HTTPTransport())
    # The batch settings come from the settings (OpenTelemetry's OTEL_BSP_*
    # names, the project's defaults), all four passed: the SDK reads nothing itself.
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            max_queue_size=settings.otel_bsp_max_queue_size,
            schedule_delay_millis=settings.otel_bsp_schedule_delay,
            max_export_batch_size=settings.otel_bsp_max_export_batch_size,
            export_timeout_millis=settings.otel_bsp_export_timeout,
        )
    )
    _State.provider, _State.rules = provider, rules
    _State.tracer = provider.get_tracer("servicekit.tracing")
    return True


def shutdown() -> None:
    """Export the spans still queued (the last requests'), then stop the exporter.

    Runs in the lifespan's shutdown, after the drain and the in-flight requests.
    """
    provider, _State.provider, _State.tracer = _State.provider, None, None
    rules, _State.rules = _State.rules, None
    try:
        if provider is not None:
            provider.shutdown()
    finally:
        stop = getattr(rules, "stop", None)  # the centralized rules' pollers
        if stop is not None:
            stop()


def _caller(incoming: TraceHeader) -> tuple[Context | None, int | None]:
    """The caller's span as the parent context, or its Root alone when it sent no Parent.

    ``incoming`` is the header as :func:`servicekit.trace_header.parse_trace_header`
    validated it (X-Ray id syntax, never an all-zero Root, the decision only
    from a trusted upstream). An all-zero Parent counts as none.
    """
    trace_id = trace_id_int(incoming.root or "")
    span_id = int(incoming.parent, 16) if incoming.parent else 0
    if not span_id:
        return None, trace_id
    flags = _SAMPLED if incoming.sampled == 1 else _NOT_SAMPLED
    caller = SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(caller)), None


class RequestTracer:
    """Traces each request in one server span (:class:`servicekit.tracing.RequestTracer`)."""

    __slots__ = ("service", "trust_sampling", "trusted_proxies")

    def __init__(
        self, service: str, *, trust_sampling: bool = False, trusted_proxies: int = 1
    ) -> None:
        self.service = service
        self.trust_sampling = trust_sampling
        self.trusted_proxies = trusted_proxies

    def begin(self, scope: Scope) -> _SpanTrace | None:
        tracer, rules = _State.tracer, _State.rules
        if tracer is None or rules is None:
            return None  # configure_tracing has not run
        incoming, host = incoming_trace(scope["headers"], trust_sampling=self.trust_sampling)
        if incoming.sampled in (0, 1):
            sampled = incoming.sampled == 1
        else:
            sampled = rules.should_trace(host, scope["method"], scope["path"])
        if sampled:
            span = self._start(tracer, incoming, scope, host)
            # The caller's id when the trace is the caller's: no formatting then.
            trace_id = incoming.root or xray_trace_id(span.get_span_context().trace_id)
        else:
            trace_id = incoming.root or new_trace_id()
            span = _unsampled_span(trace_id)
        return _SpanTrace(span, trace_id, incoming, sampled=sampled)

    def _start(
        self, tracer: trace.Tracer, incoming: TraceHeader, scope: Scope, host: str
    ) -> trace.Span:
        """The sampled request's server span, child of the caller's when it sent one.

        Every request fact is given at the start, so the SDK validates the
        attributes once.
        """
        method = scope["method"]
        client = client_facts(scope, self.trusted_proxies)
        attributes = {
            "http.request.method": method,
            "url.full": request_url(scope, host),
        }
        if client.user_agent:
            attributes["user_agent.original"] = client.user_agent
        if client.client_ip:
            # One of the two: the awsxray exporter marks the segment's client_ip
            # as taken from X-Forwarded-For when it is ``client.address`` alone,
            # and as the peer's when ``network.peer.address`` is given.
            where = "client.address" if client.forwarded else "network.peer.address"
            attributes[where] = client.client_ip
        parent, root = _caller(incoming) if incoming.root else (None, None)
        decision_token = _request_decision.set(True)
        root_token = _incoming_root.set(root) if root is not None else None
        try:
            return tracer.start_span(
                method, context=parent, kind=SpanKind.SERVER, attributes=attributes
            )
        finally:
            if root_token is not None:
                _incoming_root.reset(root_token)
            _request_decision.reset(decision_token)


class _SpanTrace:
    """A request's span (recording when sampled), current from start to end."""

    __slots__ = ("_context_token", "_sampled", "_span", "_trace_token", "response_header")

    def __init__(
        self, span: trace.Span, trace_id: str, incoming: TraceHeader, *, sampled: bool
    ) -> None:
        self.response_header = (
            TRACE_HEADER,
            trace_response_header(incoming, trace_id, sampled=sampled),
        )
        self._span = span
        self._sampled = sampled
        self._context_token = otel_context.attach(trace.set_span_in_context(span))
        self._trace_token = trace_id_var.set(trace_id)

    def responded(self, scope: Scope, status: int) -> None:
        if self._sampled:
            _record_response(self._span, scope, status)

    def failed(self, exc: BaseException) -> None:
        if self._sampled:
            span = self._span
            span.set_attribute("http.response.status_code", 500)
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))

    def end(self) -> None:
        trace_id_var.reset(self._trace_token)
        otel_context.detach(self._context_token)
        self._span.end()


def _unsampled_span(trace_id: str) -> trace.Span:
    """The span of an unsampled request: the ids only, what the SDK hands out for it.

    Built here rather than by the SDK (whose sampler would only say "drop"):
    ``trace_id`` is the caller's, else a new X-Ray one; nothing is recorded or
    queued.
    """
    ids = SpanContext(
        trace_id_int(trace_id),
        random.getrandbits(64) or 1,  # a span id is never 0
        is_remote=False,
        trace_flags=_NOT_SAMPLED,
    )
    return NonRecordingSpan(ids)


def _record_response(span: trace.Span, scope: Scope, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    route = getattr(scope.get("route"), "path", None)
    if route:
        span.update_name(f"{scope['method']} {route}")
    if status >= 500:
        # A fault in X-Ray; 4xx is the client's error, recorded from the status.
        span.set_status(Status(StatusCode.ERROR))


def trace_call(
    method: str, scheme: str, host: str, port: int | None, path: str, headers: dict[str, str]
) -> _CallSpan | None:
    """Start a client span for a call out (see :func:`servicekit.tracing.trace_call`).

    The span is named for the host and records method, URL without
    credentials or query, status, error and the exception. Inside an
    unsampled request only the trace id is passed on (``Sampled=0``), as the
    X-Ray path does: no span is built.
    """
    tracer = _State.tracer
    current = trace.get_current_span()
    if tracer is None or not current.get_span_context().is_valid:
        return None
    if not current.is_recording():
        headers[CALL_TRACE_HEADER] = call_trace_header(
            xray_trace_id(current.get_span_context().trace_id), None
        )
        return None
    span = tracer.start_span(
        host,
        kind=SpanKind.CLIENT,
        attributes={
            "http.request.method": method,
            "url.full": call_url(scheme, host, port, path),
        },
    )
    ids = span.get_span_context()
    headers[CALL_TRACE_HEADER] = call_trace_header(
        xray_trace_id(ids.trace_id), f"{ids.span_id:016x}"
    )
    return _CallSpan(span)


class _CallSpan:
    """A call's client span until the call is over (:class:`servicekit.tracing.CallTrace`)."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def answered(self, status: int) -> None:
        self._span.set_attribute("http.response.status_code", status)
        if status >= 400:
            self._span.set_status(Status(StatusCode.ERROR))

    def failed(self, exc: BaseException) -> None:
        self._span.record_exception(exc)
        self._span.set_status(Status(StatusCode.ERROR, type(exc).__name__))

    def end(self) -> None:
        self._span.end()


def instrument_sqlalchemy(engine: AsyncEngine) -> None:
    """Record every SQL statement run inside a sampled request as a client span.

    The attributes are the ``db.*`` names the ``awsxray`` exporter turns into
    the subsegment's ``sql`` block (statement, database type and URL).
    """
    from sqlalchemy import event  # noqa: PLC0415 - only the backend has SQLAlchemy

    url = engine.url
    name = f"{url.database or url.get_backend_name()}@{url.host or 'local'}"
    attributes = {
        "db.system": url.get_backend_name(),
        "db.name": url.database or "",
        "db.connection_string": url.render_as_string(hide_password=True),
    }
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _begin(
        _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        tracer = _State.tracer
        if tracer is None or context is None or not trace.get_current_span().is_recording():
            return
        context.sbcntr_span = tracer.start_span(
            name, kind=SpanKind.CLIENT, attributes={**attributes, "db.statement": statement}
        )

    @event.listens_for(sync_engine, "after_cursor_execute")
    def _end(_conn: Any, _cursor: Any, _st: str, _params: Any, context: Any, _many: bool) -> None:
        span = getattr(context, "sbcntr_span", None)
        if span is not None:
            context.sbcntr_span = None
            span.end()

    @event.listens_for(sync_engine, "handle_error")
    def _error(exception_context: Any) -> None:
        context = exception_context.execution_context
        span = getattr(context, "sbcntr_span", None)
        if span is not None:
            context.sbcntr_span = None
            span.record_exception(exception_context.original_exception)
            span.set_status(Status(StatusCode.ERROR))
            span.end()
