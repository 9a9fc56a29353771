"""The service middleware: everything both services do around each request, in one ASGI layer.

:class:`ServiceMiddleware` is the one pure ASGI middleware
:func:`servicekit.app.create_service_app` puts around a service's routes. Per
HTTP request, in this order:

1. **tracing** (:mod:`servicekit.tracing`): the request joins the caller's
   trace or starts one; its trace id is on every log line of the request and
   the response answers ``X-Amzn-Trace-Id``;
2. **access log** (:mod:`servicekit.accesslog`): the request id (an incoming
   valid ``X-Request-Id``, else a new one) is on every log line and in the
   response's ``X-Request-Id``; ``X-Served-By`` names the task
   (:mod:`servicekit.identity`); the request is counted for the drain
   (:class:`servicekit.health.Lifecycle`) and, but health checks, in the
   metrics (:class:`servicekit.metrics.Metrics`); one access line when it ends;
3. **browser security** (:mod:`servicekit.browser`): a foreign ``Host`` (400)
   or a cross-origin write (403) is refused before the application sees it;
   the security headers are added to every response;
4. **error boundary** (:mod:`servicekit.errors`): an unhandled exception is
   answered with the 500 (the JSON error body, or the service's error page
   for a browser; ``Connection: close``), then goes on to the access line and
   the trace, so the failure is one ``error`` line with its traceback;
5. **body limit** (:mod:`servicekit.edge`): a ``Content-Length`` over
   ``MAX_REQUEST_BODY_BYTES`` is a 413 before any of the body is read; a
   streamed (chunked) body is counted as the application reads it.

What a service adds (``create_service_app(middleware=...)``) runs inside this
layer, so what it answers is traced and access-logged too.

Why one layer, not five: each ASGI middleware adds a coroutine frame that
every suspension of the request resumes through, and a ``send`` wrapper
every response message passes through. Five of them cost the frontend (whose
request waits on the backend several times) about as much CPU as the five
jobs themselves. The jobs stay in the modules named above; this module only
puts them in order.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.accesslog import log_request
from servicekit.asgi import REQUEST_ID_HEADER, REQUEST_ID_SCOPE_KEY, client_facts, new_request_id
from servicekit.browser import BrowserPolicy
from servicekit.edge import REFUSAL_SCOPE_KEY, Refusal, answer_body_too_large, counted_receive
from servicekit.errors import answer_internal_error
from servicekit.health import HEALTH_PATHS, Lifecycle
from servicekit.identity import SERVED_BY_HEADER, TaskIdentity, local_identity
from servicekit.logs import request_id_var
from servicekit.metrics import UNMATCHED_ROUTE, Metrics

if TYPE_CHECKING:
    from servicekit.tracing import RequestTrace, RequestTracer


class ServiceMiddleware:
    """Traces, access-logs, guards and limits each HTTP request (see the module)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        lifecycle: Lifecycle,
        browser: BrowserPolicy,
        max_body_bytes: int,
        tracer: RequestTracer | None = None,
        metrics: Metrics | None = None,
        trusted_proxies: int = 1,
        identity: TaskIdentity | None = None,
    ) -> None:
        self.app = app
        self.lifecycle = lifecycle
        self.browser = browser
        self.max_body_bytes = max_body_bytes
        self.tracer = tracer
        self.metrics = metrics
        self.trusted_proxies = trusted_proxies
        served_by = (identity or local_identity()).header_value()
        self.served_by = (SERVED_BY_HEADER.encode(), served_by.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        start = time.perf_counter()
        trace: RequestTrace | None = None
        if self.tracer is not None:
            trace = self.tracer.begin(scope)
        incoming_id, user_agent, client_ip, _ = client_facts(scope, self.trusted_proxies)
        request_id = incoming_id or new_request_id()
        request_token = request_id_var.set(request_id)
        scope[REQUEST_ID_SCOPE_KEY] = request_id
        added = [(REQUEST_ID_HEADER, request_id.encode("ascii")), self.served_by]
        if trace is not None:
            added.append(trace.response_header)
        browser = self.browser
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                if trace is not None:
                    trace.responded(scope, status)
                headers = browser.response_headers(scope, message.get("headers", ()))
                headers += added
                message["headers"] = headers
            await send(message)

        self.lifecycle.request_started()
        error: BaseException | None = None
        try:
            try:
                refused = browser.refusal(scope)
                if refused is not None:
                    await browser.refuse(scope, receive, send_with_headers, *refused)
                    return
                receive_body, too_large = counted_receive(scope, receive, self.max_body_bytes)
                if too_large:
                    await answer_body_too_large(send_with_headers, self.max_body_bytes)
                    return
                await self.app(scope, receive_body, send_with_headers)
            except Exception:
                if not started:
                    await answer_internal_error(scope, receive, send_with_headers)
                raise
        except BaseException as exc:
            error = exc
            if trace is not None:
                trace.failed(exc)
            raise
        finally:
            try:
                cancelled = isinstance(error, asyncio.CancelledError)
                self.lifecycle.request_finished(cancelled=cancelled)
                duration_ms = (time.perf_counter() - start) * 1000
                refusal: Refusal | None = scope.get(REFUSAL_SCOPE_KEY)
                if refusal is not None:
                    status = refusal.status
                log_request(scope, status, duration_ms, user_agent, client_ip, error, refusal)
                if self.metrics is not None and scope["path"] not in HEALTH_PATHS:
                    route = scope.get("route")
                    template = getattr(route, "path", UNMATCHED_ROUTE)
                    self.metrics.record_request(scope["method"], template, status, duration_ms)
            finally:
                # Whatever the record did: the context is restored, the trace sent.
                request_id_var.reset(request_token)
                if trace is not None:
                    trace.end()
                # The error's traceback holds this frame: a reference to it
                # here would make the two a reference cycle.
                error = None
