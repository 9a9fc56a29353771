"""The access log: exactly one JSON line per HTTP request.

A pure ASGI middleware (no ``BaseHTTPMiddleware``: it costs several times the
CPU and ends before a streamed body is sent). It takes the request id from an
incoming ``X-Request-Id`` or makes one, returns it in the response, exposes it
to every log line written while the request runs, counts requests for the
drain accounting in :class:`servicekit.health.Lifecycle`, and adds each
request (but health checks) to the service's :class:`servicekit.metrics.Metrics`.
Every response also says which task served it (``X-Served-By``, see
:mod:`servicekit.identity`).

The line is written by :func:`servicekit.logs.write_event` (the line structlog
would write, for a fraction of its cost) unless it carries a traceback.
Level by outcome: health checks ``debug``; 5xx, unhandled exceptions and
requests cut short by shutdown ``error``; 4xx ``warning`` (a client that went
away before its request was read is a 499, see :mod:`servicekit.errors`); the
rest ``info``. A request the edge refused while the application ran it (a body
that did not arrive in time) is recorded with the status the client got
(:class:`servicekit.edge.Refusal`), not what the application then answered
into a closed connection.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.asgi import REQUEST_ID_HEADER, REQUEST_ID_SCOPE_KEY, client_facts, new_request_id
from servicekit.edge import REFUSAL_SCOPE_KEY, Refusal
from servicekit.health import HEALTH_PATHS, Lifecycle
from servicekit.identity import SERVED_BY_HEADER, TaskIdentity, local_identity
from servicekit.logs import get_logger, level_enabled, request_id_var, write_event
from servicekit.metrics import UNMATCHED_ROUTE, Metrics

ACCESS_LOGGER = "servicekit.access"
access_log = get_logger(ACCESS_LOGGER)


class AccessLogMiddleware:
    """Writes the access line of each request and keeps the request accounting."""

    def __init__(
        self,
        app: ASGIApp,
        lifecycle: Lifecycle,
        metrics: Metrics | None = None,
        trusted_proxies: int = 1,
        identity: TaskIdentity | None = None,
    ) -> None:
        self.app = app
        self.lifecycle = lifecycle
        self.metrics = metrics
        served_by = (identity or local_identity()).header_value()
        self.served_by = (SERVED_BY_HEADER.encode(), served_by.encode())
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        start = time.perf_counter()
        incoming_id, user_agent, client_ip, _ = client_facts(scope, self.trusted_proxies)
        request_id = incoming_id or new_request_id()
        token = request_id_var.set(request_id)
        scope[REQUEST_ID_SCOPE_KEY] = request_id
        status = 500
        request_id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    request_id_header,
                    self.served_by,
                ]
            await send(message)

        self.lifecycle.request_started()
        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_with_request_id)
        except BaseException as exc:
            error = exc
            raise
        finally:
            cancelled = isinstance(error, asyncio.CancelledError)
            self.lifecycle.request_finished(cancelled=cancelled)
            duration_ms = (time.perf_counter() - start) * 1000
            refusal: Refusal | None = scope.get(REFUSAL_SCOPE_KEY)
            if refusal is not None:
                status = refusal.status
            fields = {"refused": refusal.error, "reason": refusal.message} if refusal else {}
            self._log(scope, status, duration_ms, user_agent, client_ip, error, cancelled, fields)
            if self.metrics is not None and scope["path"] not in HEALTH_PATHS:
                route = scope.get("route")
                template = getattr(route, "path", UNMATCHED_ROUTE)
                self.metrics.record_request(scope["method"], template, status, duration_ms)
            request_id_var.reset(token)

    @staticmethod
    def _log(
        scope: Scope,
        status: int,
        duration_ms: float,
        user_agent: str,
        client_ip: str,
        error: BaseException | None,
        cancelled: bool,
        extra: dict[str, Any],
    ) -> None:
        path: str = scope["path"]
        fields: dict[str, Any] = {
            **extra,
            "method": scope["method"],
            "path": path,
            "status": status,
            "duration_ms": round(duration_ms, 3),
            "client_ip": client_ip,
            "user_agent": user_agent,
        }
        if error is not None and not extra and not cancelled:
            access_log.error("request", exc_info=error, **fields)  # with its traceback
            return
        if extra:  # refused by the edge: the client's doing, whatever the application did
            level = "warning"
        elif cancelled:
            level = "error"
            fields = {"cancelled": True, **fields}
        elif path in HEALTH_PATHS:
            level = "debug"
        elif status >= 500:
            level = "error"
        elif status >= 400:
            level = "warning"
        else:
            level = "info"
        if level_enabled(level):
            write_event(ACCESS_LOGGER, "request", level, fields)
