"""AWS X-Ray tracing: one segment per request, subsegments for calls out.

Everything X-Ray lives in this module, so that another tracing backend
(OpenTelemetry through ADOT, which AWS recommends now that the X-Ray SDKs are
in maintenance) can replace it in one place.

* :class:`ContextVarContext` keeps the trace entities in a ``ContextVar``. The
  SDK's ``AsyncContext`` breaks under uvloop (every request answers 400) and
  loses the segment in ``asyncio.gather``; a context variable follows tasks,
  ``gather`` and the thread pool of sync endpoints.
* :class:`TracingMiddleware` is a pure ASGI middleware: it honours an incoming
  ``X-Amzn-Trace-Id``, samples by the rules file, records method, URL, status,
  fault and error, returns the trace header, and ends the segment after the
  response body is sent.
* :func:`instrument_transport` wraps an ``httpx`` transport so each call is a
  ``remote`` subsegment that propagates the trace header (unsampled calls only
  propagate the header).
* :func:`instrument_sqlalchemy` records each SQL statement as a subsegment.
"""

from __future__ import annotations

import os
import traceback
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import httpx
from aws_xray_sdk import global_sdk_config
from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.core.context import Context
from aws_xray_sdk.core.models import http
from aws_xray_sdk.core.models.dummy_entities import DummySegment
from aws_xray_sdk.core.models.traceid import TraceId
from aws_xray_sdk.core.sampling.local.sampler import LocalSampler
from aws_xray_sdk.ext.util import (
    calculate_sampling_decision,
    construct_xray_header,
    prepare_response_header,
)
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.logs import trace_id_var

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from servicekit.settings import ServiceSettings

TRACE_HEADER = b"x-amzn-trace-id"


class ContextVarContext(Context):  # type: ignore[misc]
    """X-Ray context whose entity stack lives in a ``ContextVar``.

    The stack is an immutable tuple: a task (or thread-pool call) that opens a
    subsegment sets a new tuple in its own copy of the context, so sibling
    tasks never see each other's subsegments.
    """

    def __init__(self, context_missing: str = "LOG_ERROR") -> None:
        super().__init__(context_missing)
        self._entities: ContextVar[tuple[Any, ...]] = ContextVar("xray_entities", default=())

    def put_segment(self, segment: Any) -> None:
        self._entities.set((segment,))

    def end_segment(self, end_time: float | None = None) -> None:
        entity = self.get_trace_entity()
        if not entity:
            return
        if self._is_subsegment(entity):
            entity.parent_segment.close(end_time)
        else:
            entity.close(end_time)

    def put_subsegment(self, subsegment: Any) -> None:
        entity = self.get_trace_entity()
        if not entity:
            return
        entity.add_subsegment(subsegment)
        self._entities.set((*self._entities.get(), subsegment))

    def end_subsegment(self, end_time: float | None = None) -> bool:
        entity = self.get_trace_entity()
        if self._is_subsegment(entity):
            entity.close(end_time)
            self._entities.set(self._entities.get()[:-1])
            return True
        return False

    def get_trace_entity(self) -> Any:
        entities = self._entities.get()
        if not entities:
            if not global_sdk_config.sdk_enabled():
                return DummySegment()
            return self.handle_context_missing()
        return entities[-1]

    def set_trace_entity(self, trace_entity: Any) -> None:
        self._entities.set((trace_entity,))

    def clear_trace_entities(self) -> None:
        self._entities.set(())

    def has_entity(self) -> bool:
        """True inside a traced request, without the context-missing handling."""
        return bool(self._entities.get())


def configure_tracing(settings: ServiceSettings) -> bool:
    """Configure the SDK's recorder from the settings; return whether tracing is on.

    Call it inside the running event loop (the FastAPI lifespan), once.
    """
    global_sdk_config.set_sdk_enabled(settings.tracing_enabled)
    if not settings.tracing_enabled:
        return False
    options: dict[str, Any] = {
        "service": settings.service_name,
        "context": ContextVarContext(settings.xray_context_missing),
        "context_missing": settings.xray_context_missing,
        "daemon_address": settings.xray_daemon_address,
        "sampling": True,
        "sampling_rules": str(settings.xray_sampling_rules),
        "plugins": ("ECSPlugin",) if _on_ecs() else (),
    }
    if not settings.xray_centralized_sampling:
        options["sampler"] = LocalSampler()
    xray_recorder.configure(**options)
    return True


def _on_ecs() -> bool:
    return "ECS_CONTAINER_METADATA_URI_V4" in os.environ


def _in_traced_request() -> bool:
    context = xray_recorder.context
    return isinstance(context, ContextVarContext) and context.has_entity()


class TracingMiddleware:
    """Opens one X-Ray segment per HTTP request and closes it after the body is sent."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not global_sdk_config.sdk_enabled():
            await self.app(scope, receive, send)
            return

        headers = Headers(scope=scope)
        incoming = construct_xray_header(headers)
        host = headers.get("host", "")
        path: str = scope["path"]
        method: str = scope["method"]
        decision = calculate_sampling_decision(
            incoming,
            xray_recorder,
            {"host": host, "method": method, "path": path, "service": self.service},
        )
        segment = xray_recorder.begin_segment(
            name=self.service, traceid=incoming.root, parent_id=incoming.parent, sampling=decision
        )
        if isinstance(segment, DummySegment):
            # Unsampled requests keep a real trace id so that logs and the
            # propagated header still name the trace.
            segment.trace_id = incoming.root or TraceId().to_id()
        trace_token = trace_id_var.set(segment.trace_id)
        segment.put_http_meta(http.METHOD, method)
        segment.put_http_meta(
            http.URL, f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}{path}"
        )
        segment.put_http_meta(http.USER_AGENT, headers.get("user-agent"))
        forwarded = headers.get("x-forwarded-for")
        if forwarded:
            segment.put_http_meta(http.CLIENT_IP, forwarded.split(",", 1)[0].strip())
            segment.put_http_meta(http.X_FORWARDED_FOR, True)
        elif scope.get("client"):
            segment.put_http_meta(http.CLIENT_IP, scope["client"][0])
        response_header = (TRACE_HEADER, prepare_response_header(incoming, segment).encode())

        async def send_traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                segment.put_http_meta(http.STATUS, status)
                segment.apply_status_code(status)
                message["headers"] = [*message.get("headers", ()), response_header]
            await send(message)

        try:
            await self.app(scope, receive, send_traced)
        except BaseException as exc:
            segment.put_http_meta(http.STATUS, 500)
            segment.apply_status_code(500)
            segment.add_exception(exc, traceback.extract_tb(exc.__traceback__))
            raise
        finally:
            xray_recorder.end_segment()
            trace_id_var.reset(trace_token)


class TracedTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose calls are ``remote`` subsegments carrying the trace header.

    What the SDK's ``AsyncInstrumentedTransport`` records (name = host,
    method, URL without credentials or query, status, fault/error, the
    exception), written for the hot path. An unsampled request only passes
    its trace id on (``Sampled=0``): no subsegment would be sent, so none is
    built.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        context = xray_recorder.context
        if not (isinstance(context, ContextVarContext) and context.has_entity()):
            return await self._transport.handle_async_request(request)
        entity = context.get_trace_entity()
        if not entity.sampled:
            request.headers["X-Amzn-Trace-Id"] = f"Root={entity.trace_id};Sampled=0"
            return await self._transport.handle_async_request(request)
        url = request.url
        subsegment = xray_recorder.begin_subsegment(url.host, "remote")
        try:
            subsegment.put_http_meta(http.METHOD, request.method)
            port = f":{url.port}" if url.port else ""
            subsegment.put_http_meta(http.URL, f"{url.scheme}://{url.host}{port}{url.path}")
            request.headers["X-Amzn-Trace-Id"] = (
                f"Root={subsegment.trace_id};Parent={subsegment.id};Sampled=1"
            )
            response = await self._transport.handle_async_request(request)
            subsegment.put_http_meta(http.STATUS, response.status_code)
            subsegment.apply_status_code(response.status_code)
        except Exception as exc:
            subsegment.add_exception(exc, traceback.extract_tb(exc.__traceback__))
            raise
        finally:
            xray_recorder.end_subsegment()
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


def instrument_transport(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
    """Wrap an httpx transport for tracing (when tracing is on), without replacing
    ``httpx.AsyncClient`` process-wide."""
    if not global_sdk_config.sdk_enabled():
        return transport
    return TracedTransport(transport)


def instrument_sqlalchemy(engine: AsyncEngine) -> None:
    """Record every SQL statement the engine runs inside a traced request as a subsegment."""
    if not global_sdk_config.sdk_enabled():
        return
    from sqlalchemy import event  # noqa: PLC0415 - only the backend has SQLAlchemy

    url = engine.url
    name = f"{url.database or url.get_backend_name()}@{url.host or 'local'}"
    sql_meta = {
        "url": url.render_as_string(hide_password=True),
        "database_type": url.get_backend_name(),
        "driver_version": url.get_driver_name(),
    }
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _begin(*args: Any) -> None:
        if not _in_traced_request():
            return
        subsegment = xray_recorder.begin_subsegment(name, namespace="remote")
        if subsegment is not None:
            subsegment.set_sql({**sql_meta, "sanitized_query": args[2]})

    @event.listens_for(sync_engine, "after_cursor_execute")
    def _end(*_: Any) -> None:
        if _in_traced_request():
            xray_recorder.end_subsegment()

    @event.listens_for(sync_engine, "handle_error")
    def _error(context: Any) -> None:
        if not _in_traced_request():
            return
        entity = xray_recorder.current_subsegment()
        if entity is not None:
            exc = context.original_exception
            entity.add_exception(exc, traceback.extract_tb(exc.__traceback__))
            xray_recorder.end_subsegment()
