"""OpenTelemetry tracing with X-Ray ids, exported over OTLP to an ADOT collector.

The implementation behind :mod:`servicekit.tracing` when
``TRACING_BACKEND=otel``; that module imports this one only then, so the X-Ray
SDK path never loads the OpenTelemetry packages. Everything is set up here, in
plain sight (no auto-instrumentation):

* the SDK's ``TracerProvider`` with ``AwsXRayIdGenerator`` (trace ids carry
  the start time, as X-Ray requires) and a batch processor exporting OTLP/HTTP
  to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the collector sidecar, port 4318);
* the sampling rules file of the X-Ray path, applied by :class:`RulesSampler`
  (an incoming ``Sampled=1|0`` is followed, as on the X-Ray path);
* ``X-Amzn-Trace-Id`` is read with the X-Ray SDK's parser (as on the X-Ray
  path: ``Sampled=?`` and a root without a parent, which the load balancer
  sends, are honoured; OpenTelemetry's ``AwsXRayPropagator`` refuses both and
  would start a new trace) and written by ``AwsXRayPropagator``, so a service
  on this path and one on the X-Ray SDK path join one trace;
* :class:`OtelTracingMiddleware` (server span per request),
  :func:`instrument_transport` (client span per httpx call) and
  :func:`instrument_sqlalchemy` (client span per SQL statement) record what
  the X-Ray path records, under the attribute names the collector's
  ``awsxray`` exporter turns into segment fields.

An unsampled request builds no recording span: the SDK hands out the API's
``NonRecordingSpan`` (one small object holding the ids), nothing is queued for
export, and outgoing calls only pass the trace id on (``Sampled=0``).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from aws_xray_sdk.core.models.trace_header import TraceHeader
from aws_xray_sdk.core.sampling.local.sampler import LocalSampler
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.sdk.extension.aws.resource.ecs import AwsEcsResourceDetector
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.resources import Resource, get_aggregated_resources
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.asgi import client_facts
from servicekit.logs import get_logger, trace_id_var
from servicekit.tracing import parse_trace_header, trace_response_header

if TYPE_CHECKING:
    from pathlib import Path

    import httpx
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, TraceState
    from opentelemetry.util.types import Attributes
    from sqlalchemy.ext.asyncio import AsyncEngine

    from servicekit.settings import ServiceSettings

TRACE_HEADER = b"x-amzn-trace-id"

log = get_logger("servicekit.tracing")

_propagator = AwsXRayPropagator()


class _State:
    """The process's provider and tracer, set by :func:`configure`."""

    provider: TracerProvider | None = None
    tracer: trace.Tracer | None = None


def xray_trace_id(trace_id: int) -> str:
    """An OpenTelemetry trace id in X-Ray's text form: ``1-<8 hex>-<24 hex>``."""
    text = f"{trace_id:032x}"
    return f"1-{text[:8]}-{text[8:]}"


# A start attribute the middleware passes to the sampler (and the sampler
# removes): the caller's decision, "1" or "0", when its header carries one.
_CALLER_DECISION = "sbcntr.caller_sampled"
# The incoming Root when the header has no Parent: the new span keeps the trace id.
_incoming_root: ContextVar[int | None] = ContextVar("incoming_xray_root", default=None)


class _IncomingRootIdGenerator(AwsXRayIdGenerator):
    """X-Ray trace ids; the caller's Root when it sent one without a Parent."""

    def generate_trace_id(self) -> int:
        root = _incoming_root.get()
        return root if root is not None else super().generate_trace_id()


class RulesSampler(Sampler):
    """The decision the X-Ray path makes, as an OpenTelemetry sampler.

    A span inside a traced request follows its parent. A request follows its
    caller's ``Sampled=1|0``; otherwise the X-Ray sampling rules file (version
    2) decides, with the X-Ray SDK's ``LocalSampler`` doing the rule matching
    and the per-second reservoir (the same file gives the same decisions on
    both paths). The request's facts come from the span's start attributes:
    ``http.request.method``, ``url.path`` and ``server.address``.
    """

    def __init__(self, rules_file: Path, service: str) -> None:
        self._rules = LocalSampler()
        self._rules.load_local_rules(json.loads(rules_file.read_text(encoding="utf-8")))
        self._service = service

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
            return self._result(parent.trace_flags.sampled, attributes, trace_state)
        facts = dict(attributes or {})
        caller = facts.pop(_CALLER_DECISION, None)
        if caller is not None:
            return self._result(caller == "1", facts, trace_state)
        sampled = self._rules.should_trace(
            {
                "host": facts.get("server.address"),
                "method": facts.get("http.request.method"),
                "path": facts.get("url.path"),
                "service": self._service,
            }
        )
        return self._result(sampled, facts, trace_state)

    @staticmethod
    def _result(
        sampled: bool, attributes: Attributes, trace_state: TraceState | None
    ) -> SamplingResult:
        if sampled:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return SamplingResult(Decision.DROP, None, trace_state)

    def get_description(self) -> str:
        return "XRayLocalRules"


def configure(settings: ServiceSettings) -> bool:
    """Build the provider, sampler and exporter from the settings; return True.

    Call it once, inside the running loop (the FastAPI lifespan). The provider
    is the module's own, not the process-wide global: nothing else in the
    process can replace it or record into it by accident.
    """
    resource = Resource.create({"service.name": settings.service_name})
    if "ECS_CONTAINER_METADATA_URI_V4" in os.environ:
        resource = get_aggregated_resources([AwsEcsResourceDetector()], initial_resource=resource)
    provider = TracerProvider(
        sampler=RulesSampler(settings.xray_sampling_rules, settings.service_name),
        resource=resource,
        id_generator=_IncomingRootIdGenerator(),
        # Flushed by shutdown() in the lifespan, within the drain, not by an
        # interpreter exit hook after the logs are gone.
        shutdown_on_exit=False,
    )
    endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    _State.provider = provider
    _State.tracer = provider.get_tracer("servicekit.tracing")
    return True


def shutdown() -> None:
    """Export the spans still queued (the last requests'), then stop the exporter.

    Runs in the lifespan's shutdown, after the drain and the in-flight requests.
    """
    provider, _State.provider, _State.tracer = _State.provider, None, None
    if provider is not None:
        provider.shutdown()


def _caller(incoming: TraceHeader, attributes: dict[str, Any]) -> tuple[Context | None, int | None]:
    """The caller's span as the parent context, or its Root alone when it sent no Parent.

    ``incoming`` is the header as :func:`servicekit.tracing.parse_trace_header`
    validated it (the same rules as the X-Ray path: bounded length, X-Ray id
    syntax, the sampling decision only from a trusted upstream). Adds the
    caller's decision (``Sampled=1|0``) to the start attributes for
    :class:`RulesSampler`. A malformed Root starts a new trace.
    """
    root = incoming.root or ""
    if len(root) != 35 or not root.startswith("1-") or root[10] != "-":
        return None, None
    try:
        trace_id = int(root[2:10] + root[11:], 16)
        span_id = int(incoming.parent, 16) if incoming.parent and len(incoming.parent) == 16 else 0
    except ValueError:
        return None, None
    if incoming.sampled in (0, 1):
        attributes[_CALLER_DECISION] = str(incoming.sampled)
    if not span_id:
        return None, trace_id
    flags = TraceFlags(TraceFlags.SAMPLED if incoming.sampled == 1 else TraceFlags.DEFAULT)
    caller = SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(caller)), None


class OtelTracingMiddleware:
    """Opens one server span per HTTP request and ends it after the body is sent."""

    def __init__(
        self, app: ASGIApp, service: str, *, trust_sampling: bool = False, trusted_proxies: int = 1
    ) -> None:
        self.app = app
        self.service = service
        self.trust_sampling = trust_sampling
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = _State.tracer
        if scope["type"] != "http" or tracer is None:
            await self.app(scope, receive, send)
            return
        raw_header, host = b"", ""
        for name, value in scope["headers"]:
            if name == TRACE_HEADER:
                raw_header = value
            elif name == b"host":
                host = value.decode("latin-1")
        method = scope["method"]
        attributes = {
            "http.request.method": method,
            "url.path": scope["path"],
            "server.address": host,
        }
        parent, root_token = None, None
        incoming = parse_trace_header(raw_header, trust_sampling=self.trust_sampling)
        if incoming.root:
            parent, root = _caller(incoming, attributes)
            if root is not None:
                root_token = _incoming_root.set(root)
        try:
            span = tracer.start_span(
                method, context=parent, kind=SpanKind.SERVER, attributes=attributes
            )
        finally:
            if root_token is not None:
                _incoming_root.reset(root_token)
        span_context = span.get_span_context()
        trace_id = xray_trace_id(span_context.trace_id)
        recording = span.is_recording()
        if recording:
            self._record_request(span, scope, host)
        response_header = (
            TRACE_HEADER,
            trace_response_header(incoming, trace_id, sampled=span_context.trace_flags.sampled),
        )

        async def send_traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                if recording:
                    _record_response(span, scope, message["status"])
                message["headers"] = [*message.get("headers", ()), response_header]
            await send(message)

        context_token = otel_context.attach(trace.set_span_in_context(span))
        trace_token = trace_id_var.set(trace_id)
        try:
            await self.app(scope, receive, send_traced)
        except BaseException as exc:
            if recording:
                span.set_attribute("http.response.status_code", 500)
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            trace_id_var.reset(trace_token)
            otel_context.detach(context_token)
            span.end()

    def _record_request(self, span: trace.Span, scope: Scope, host: str) -> None:
        client = client_facts(scope, self.trusted_proxies)
        span.set_attribute(
            "url.full",
            f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}{scope['path']}",
        )
        if client.user_agent:
            span.set_attribute("user_agent.original", client.user_agent)
        if client.client_ip:
            span.set_attribute("client.address", client.client_ip)
            if not client.forwarded:
                # The awsxray exporter marks the segment's client_ip as taken
                # from X-Forwarded-For unless the peer's address is given too.
                span.set_attribute("network.peer.address", client.client_ip)


def _record_response(span: trace.Span, scope: Scope, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    route = getattr(scope.get("route"), "path", None)
    if route:
        span.set_attribute("http.route", route)
        span.update_name(f"{scope['method']} {route}")
    if status >= 500:
        # A fault in X-Ray; 4xx is the client's error, recorded from the status.
        span.set_status(Status(StatusCode.ERROR))


def instrument_transport(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
    """Wrap an httpx transport so each call is a client span carrying the trace header."""
    return _traced_transport_class()(transport)


@functools.cache
def _traced_transport_class() -> Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]:
    import httpx  # noqa: PLC0415 - only services that call out over HTTP have it

    class OtelTracedTransport(httpx.AsyncBaseTransport):
        """An httpx transport whose calls are client spans (name = host).

        Records method, URL without credentials or query, status, error and
        the exception. Inside an unsampled request it only passes the trace id
        on (``Sampled=0``), as the X-Ray path does: no span is built.
        """

        def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
            self._transport = transport

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            tracer = _State.tracer
            current = trace.get_current_span()
            if tracer is None or not current.get_span_context().is_valid:
                return await self._transport.handle_async_request(request)
            if not current.is_recording():
                root = xray_trace_id(current.get_span_context().trace_id)
                request.headers["X-Amzn-Trace-Id"] = f"Root={root};Sampled=0"
                return await self._transport.handle_async_request(request)
            url = request.url
            port = f":{url.port}" if url.port else ""
            span = tracer.start_span(
                url.host,
                kind=SpanKind.CLIENT,
                attributes={
                    "http.request.method": request.method,
                    "url.full": f"{url.scheme}://{url.host}{port}{url.path}",
                    "server.address": url.host,
                },
            )
            try:
                _propagator.inject(request.headers, context=trace.set_span_in_context(span))
                response = await self._transport.handle_async_request(request)
                span.set_attribute("http.response.status_code", response.status_code)
                if response.status_code >= 400:
                    span.set_status(Status(StatusCode.ERROR))
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            finally:
                span.end()
            return response

        async def aclose(self) -> None:
            await self._transport.aclose()

    return OtelTracedTransport


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
        "server.address": url.host or "local",
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
