"""The access log: exactly one JSON line per HTTP request.

A pure ASGI middleware (no ``BaseHTTPMiddleware``: it costs several times the
CPU and ends before a streamed body is sent). It takes the request id from an
incoming ``X-Request-Id`` or makes one, returns it in the response, exposes it
to every log line written while the request runs, and counts requests for the
drain accounting in :class:`servicekit.health.Lifecycle`.

Level by outcome: health checks ``debug``; 5xx, unhandled exceptions and
requests cut short by shutdown ``error``; 4xx ``warning``; the rest ``info``.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.health import HEALTH_PATHS, Lifecycle
from servicekit.logs import get_logger, request_id_var

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
_USER_AGENT_MAX = 256

access_log = get_logger("servicekit.access")


def _request_facts(scope: Scope) -> tuple[str | None, str, str]:
    """Incoming request id (if valid), user agent and client IP from the ASGI scope."""
    request_id: str | None = None
    user_agent = ""
    forwarded_for = b""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if _VALID_REQUEST_ID.match(value):
                request_id = value.decode("ascii")
        elif name == b"user-agent":
            user_agent = value[:_USER_AGENT_MAX].decode("latin-1")
        elif name == b"x-forwarded-for":
            forwarded_for = value
    if forwarded_for:
        # Behind the ALB the left-most address is the client's.
        client_ip = forwarded_for.split(b",", 1)[0].strip().decode("latin-1")
    else:
        client = scope.get("client")
        client_ip = client[0] if client else ""
    return request_id, user_agent, client_ip


class AccessLogMiddleware:
    """Writes the access line of each request and keeps the request accounting."""

    def __init__(self, app: ASGIApp, lifecycle: Lifecycle) -> None:
        self.app = app
        self.lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        start = time.perf_counter()
        incoming_id, user_agent, client_ip = _request_facts(scope)
        request_id = incoming_id or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        status = 500
        request_id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), request_id_header]
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
            self._log(scope, status, start, user_agent, client_ip, error, cancelled)
            request_id_var.reset(token)

    @staticmethod
    def _log(
        scope: Scope,
        status: int,
        start: float,
        user_agent: str,
        client_ip: str,
        error: BaseException | None,
        cancelled: bool,
    ) -> None:
        path: str = scope["path"]
        fields: dict[str, Any] = {
            "method": scope["method"],
            "path": path,
            "status": status,
            "duration_ms": round((time.perf_counter() - start) * 1000, 3),
            "client_ip": client_ip,
            "user_agent": user_agent,
        }
        if cancelled:
            access_log.error("request", cancelled=True, **fields)
        elif error is not None:
            access_log.error("request", exc_info=error, **fields)
        elif path in HEALTH_PATHS:
            access_log.debug("request", **fields)
        elif status >= 500:
            access_log.error("request", **fields)
        elif status >= 400:
            access_log.warning("request", **fields)
        else:
            access_log.info("request", **fields)
