"""Tracing: one module for the services, two implementations behind it.

``TRACING_BACKEND`` picks the implementation; the services and their
middleware are the same with both:

* ``xray-sdk`` (the default): the AWS X-Ray SDK, segments sent over UDP to the
  X-Ray daemon sidecar (:mod:`servicekit.tracing_xray`);
* ``otel``: OpenTelemetry with X-Ray ids, spans exported over OTLP to the ADOT
  collector sidecar (:mod:`servicekit.tracing_otel`).

Both read and answer ``X-Amzn-Trace-Id`` the same way
(:mod:`servicekit.trace_header`), put the trace id on every log line of a
request (``trace_id``), pass it on to the backend, and sample with the same
rules file, so services on different backends join one trace.

Only the selected implementation is imported: the X-Ray SDK path loads no
OpenTelemetry package and the OpenTelemetry path loads neither the X-Ray SDK
nor botocore.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from pydantic import ValidationError

from servicekit.settings import TracingSelection

if TYPE_CHECKING:
    from collections.abc import MutableMapping

    from sqlalchemy.ext.asyncio import AsyncEngine
    from starlette.types import Scope

    from servicekit.settings import ServiceSettings


class RequestTrace(Protocol):
    """The trace of one request, from :meth:`RequestTracer.begin` until :meth:`end`.

    While it is open the request's trace id is on every log line
    (``trace_id``) and calls out carry it (:func:`trace_call`).
    """

    response_header: tuple[bytes, bytes]
    """The ``X-Amzn-Trace-Id`` header to answer with (ASGI's name and value)."""

    def responded(self, scope: Scope, status: int) -> None:
        """The response starts with this status (5xx: fault, 4xx: error)."""

    def failed(self, exc: BaseException) -> None:
        """The request ended in this exception (recorded as a 500 with it)."""

    def end(self) -> None:
        """The response is sent: the record is closed and sent, the context restored.

        Called in the context :meth:`RequestTracer.begin` was called in.
        """


class RequestTracer(Protocol):
    """What both implementations' ``RequestTracer`` classes are."""

    def begin(self, scope: Scope) -> RequestTrace | None:
        """Start tracing the HTTP request ``scope``: join the caller's trace or start one.

        Returns None until :func:`configure_tracing` has run.
        """


class CallTrace(Protocol):
    """The record of one HTTP call out, open from :func:`trace_call` until :meth:`end`."""

    def answered(self, status: int) -> None:
        """The call got a response with this status (4xx: error, 5xx: fault)."""

    def failed(self, exc: BaseException) -> None:
        """The call failed without a response (the exception is recorded)."""

    def end(self) -> None:
        """The call is over: the record is closed (and sent with its request's)."""


_MODULES = {"xray-sdk": "servicekit.tracing_xray", "otel": "servicekit.tracing_otel"}


class _Selected:
    """The implementation configured for this process (None: tracing is off)."""

    module: ModuleType | None = None


def _implementation(backend: str) -> ModuleType:
    return importlib.import_module(_MODULES[backend])


def preload() -> None:
    """Import the implementation ``TRACING_BACKEND`` names, before the service's own modules.

    Called first by each service's ``__main__``: on the X-Ray path the SDK's
    import-time recorder is then lightened at once
    (:func:`servicekit.tracing_xray.release_import_time_sampler` says why), so
    the memory it frees is reused by the modules loaded after it. The setting
    is read through :class:`servicekit.settings.TracingSelection`, the field
    the service's settings inherit; an invalid value is left to those settings
    to refuse, with their error message.
    """
    try:
        backend = TracingSelection().tracing_backend
    except ValidationError:
        return
    module = _implementation(backend)
    release = getattr(module, "release_import_time_sampler", None)
    if release is not None:
        release()


def configure_tracing(settings: ServiceSettings) -> bool:
    """Configure the selected implementation; return whether tracing is on.

    Call it inside the running event loop (the FastAPI lifespan), once.
    """
    if not settings.tracing_enabled:
        _Selected.module = None
        return False
    module = _implementation(settings.tracing_backend)
    _Selected.module = module
    configured: bool = module.configure(settings)
    return configured


def request_tracer(settings: ServiceSettings) -> RequestTracer:
    """The tracer of the service's requests, with the selected implementation.

    The service's middleware (:mod:`servicekit.middleware`) begins a trace per
    request with it; it traces nothing until :func:`configure_tracing` has run.
    """
    tracer: RequestTracer = _implementation(settings.tracing_backend).RequestTracer(
        settings.service_name,
        trust_sampling=settings.xray_trust_incoming_sampling,
        trusted_proxies=settings.trusted_proxies,
    )
    return tracer


def trace_call(
    method: str,
    scheme: str,
    host: str,
    port: int | None,
    path: str,
    headers: MutableMapping[str, str],
) -> CallTrace | None:
    """Start tracing an HTTP call out of the current request.

    Adds the trace header to ``headers`` (the call's request headers): the
    request's trace id, and inside a sampled request the call's own record as
    the parent. Returns that record, which the caller ends once the call is
    over (:class:`CallTrace`), or None when there is nothing to record
    (tracing off, outside a request, or the request is not sampled). The URL
    is recorded without credentials or query.
    """
    if _Selected.module is None:
        return None
    call: CallTrace | None = _Selected.module.trace_call(method, scheme, host, port, path, headers)
    return call


def instrument_sqlalchemy(engine: AsyncEngine) -> None:
    """Trace every SQL statement ``engine`` runs inside a sampled request.

    Does nothing when tracing is off. Call it after :func:`configure_tracing`.
    """
    if _Selected.module is not None:
        _Selected.module.instrument_sqlalchemy(engine)


def shutdown_tracing() -> None:
    """Send what is still buffered; call it once the last request has ended.

    The X-Ray SDK path sends the segments still waiting for the end of the
    loop's turn; OpenTelemetry's batch processor is flushed here (else the
    last requests' spans are lost).
    """
    module, _Selected.module = _Selected.module, None
    if module is not None:
        module.shutdown()
