"""The access log: exactly one JSON line per HTTP request.

The service middleware (:mod:`servicekit.middleware`) calls
:func:`log_request` once each request has ended, with the request id and
trace id of the request still on the log context.

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
from typing import Any

from starlette.types import Scope

from servicekit.edge import Refusal
from servicekit.health import HEALTH_PATHS
from servicekit.logs import get_logger, level_enabled, write_event

ACCESS_LOGGER = "servicekit.access"
access_log = get_logger(ACCESS_LOGGER)


def log_request(
    scope: Scope,
    status: int,
    duration_ms: float,
    user_agent: str,
    client_ip: str,
    error: BaseException | None,
    refusal: Refusal | None,
) -> None:
    """Write the access line of a finished request (levels: see the module).

    ``error`` is the exception the request ended in, if any (a cancellation
    is a request cut short); ``refusal`` is the edge's, when it refused the
    request while the application ran it (``status`` is then the refusal's).
    """
    path: str = scope["path"]
    if refusal is not None:  # the client's doing, whatever the application did
        level = "warning"
        first: dict[str, Any] = {"refused": refusal.error, "reason": refusal.message}
    elif error is not None:
        if not isinstance(error, asyncio.CancelledError):
            fields = _fields(scope, path, status, duration_ms, user_agent, client_ip, {})
            access_log.error("request", exc_info=error, **fields)  # with its traceback
            return
        level = "error"
        first = {"cancelled": True}
    else:
        first = {}
        if path in HEALTH_PATHS:
            level = "debug"
        elif status >= 500:
            level = "error"
        elif status >= 400:
            level = "warning"
        else:
            level = "info"
    if level_enabled(level):
        fields = _fields(scope, path, status, duration_ms, user_agent, client_ip, first)
        write_event(ACCESS_LOGGER, "request", level, fields)


def _fields(
    scope: Scope,
    path: str,
    status: int,
    duration_ms: float,
    user_agent: str,
    client_ip: str,
    first: dict[str, Any],
) -> dict[str, Any]:
    """The line's own fields, after ``first``."""
    return {
        **first,
        "method": scope["method"],
        "path": path,
        "status": status,
        "duration_ms": round(duration_ms, 3),
        "client_ip": client_ip,
        "user_agent": user_agent,
    }
