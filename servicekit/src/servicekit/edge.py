"""Limits at the HTTP edge: what one client may send, and how long it may take.

Two layers, because a limit must hold before the bytes it guards are kept:

* :class:`LimitedHttpProtocol`, uvicorn's httptools protocol with bounds the
  stock one lacks: the request line and headers must arrive within
  ``HTTP_HEADER_TIMEOUT_SECONDS`` of the connection (or of the first byte of a
  later request) and fit ``MAX_REQUEST_HEADER_BYTES`` and
  ``MAX_REQUEST_HEADERS``; a body must arrive within
  ``HTTP_BODY_TIMEOUT_SECONDS`` of its headers; an HTTP/1.1 request must name
  its ``Host``. A refused request is answered (408, 431 or 400, the JSON error
  body, ``Connection: close``) and its connection closed, so a slow or
  oversized client holds a file descriptor for a bounded time only.
* :func:`counted_receive` and :func:`answer_body_too_large`, applied by the
  service middleware (:mod:`servicekit.middleware`): a body larger than
  ``MAX_REQUEST_BODY_BYTES`` is a 413, refused from ``Content-Length`` before
  any of it is read, or as soon as a streamed (chunked) body passes the limit.

A connection is always under exactly one deadline: the header timeout (from
the connection, or from the first byte of a later request), the body timeout
(from the headers), the response being written (the application's), or the
keep-alive (``HTTP_KEEP_ALIVE_SECONDS``, from the end of the last response).
Bytes that start no request (the CR/LF a parser skips between messages) move
none of them. A pipelined request waits behind the response before it; if its
headers are not in by their deadline, the connection closes after that
response. An ``Upgrade:`` request (no route takes WebSocket) is served as
plain HTTP and its connection closed after the answer.

Every refusal is recorded once, with the status the client got. A request
refused before the application saw it is one ``warning`` line (``request
refused``) instead of an access line, counted in the metrics under the route
``(refused)``; one the application was already running (its body too slow)
is recorded by the access log with the refusal's status (:class:`Refusal`),
whatever the application then answered into the closed connection.

Private interfaces used, and why: uvicorn has no hook for these limits, so
the protocol subclasses ``uvicorn.protocols.http.httptools_impl.HttpToolsProtocol``,
overrides its parser callbacks (``on_message_begin``, ``on_header``,
``on_headers_complete``, ``on_message_complete``, ``on_response_complete``;
uvicorn's ``on_header`` stores names in lower case), replaces
``data_received`` (uvicorn's stops the keep-alive on any byte), and uses its
state: ``parser``, ``url``, ``headers``, ``cycle``, ``pipeline``,
``timeout_keep_alive``/``timeout_keep_alive_task``/
``_unset_keepalive_if_required``/``timeout_keep_alive_handler``, and on the
request cycle ``keep_alive``, ``disconnected``, ``message_event``,
``response_started``, ``response_complete``, ``scope``, ``on_response``. From httptools it
relies on a callback's exception being the ``__context__`` of
``HttpParserError`` and on ``HttpParserUpgrade``. ``servicekit/pyproject.toml``
keeps both packages below their next minor, and
``tests/servicekit/test_edge_hooks.py`` names any of these an upgrade breaks.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, cast

import httptools
import orjson
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from servicekit.asgi import REQUEST_ID_SCOPE_KEY, new_request_id
from servicekit.errors import error_body
from servicekit.logs import get_logger

if TYPE_CHECKING:
    from servicekit.metrics import Metrics

log = get_logger("servicekit.edge")

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
}


# After refusing a request whose client may still be sending, the server stops
# writing (FIN) and reads and drops what still arrives for at most this long
# before it closes: closing with unread data would send a reset, which can
# destroy the refusal before the client reads it.
LINGER_SECONDS = 2.0


class EdgeLimits(NamedTuple):
    """The protocol-level limits of one server (from the service settings)."""

    max_body_bytes: int
    max_header_bytes: int
    max_headers: int
    header_timeout: float
    body_timeout: float


REFUSAL_SCOPE_KEY = "servicekit.refusal"
"""Scope key under which the protocol leaves the :class:`Refusal` of a request
the application was already running (the access log records it)."""
REFUSED_ROUTE = "(refused)"
"""The metrics route of requests refused before the application saw them."""


class Refusal(NamedTuple):
    """What the edge answered a request instead of the application."""

    status: int
    error: str
    message: str


class _Refused(Exception):  # noqa: N818 - raised from parser callbacks to stop parsing
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def _nothing() -> None:
    """What a request that will never run calls when its response completes."""


def _refusal_of(error: httptools.HttpParserError) -> tuple[int, str, str]:
    """The status, error and message that answer a request the parser stopped at.

    A helper, not a local of ``data_received``: the refusal's traceback holds
    that frame, and a local there holding the refusal would make a reference
    cycle of the connection's last objects.
    """
    refused = error.__context__
    if isinstance(refused, _Refused):
        return refused.status, refused.error, refused.message
    return 400, "bad_request", "malformed HTTP request"


def refusal_response(status: int, error: str, message: str, request_id: str) -> bytes:
    """A complete HTTP/1.1 response refusing a request: the JSON error body, connection closed."""
    body = orjson.dumps({"error": error, "message": message, "request_id": request_id})
    head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))
    return b"".join(
        (
            head,
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-request-id: " + request_id.encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        )
    )


class _LingeringTransport:
    """The connection's transport, whose ``close`` lingers while the client may still send.

    uvicorn closes the transport itself after a ``Connection: close``
    response; this wrapper routes that close through
    :meth:`LimitedHttpProtocol.close_connection`. It holds its protocol by a
    weak reference: the protocol holds the wrapper, and a strong reference
    back would make every connection a reference cycle, freed only when the
    garbage collector runs, which in the services is rarely (see
    :func:`servicekit.runner.tune_garbage_collector`).
    """

    def __init__(self, transport: asyncio.Transport, protocol: LimitedHttpProtocol) -> None:
        self._transport = transport
        self._protocol = weakref.ref(protocol)
        self.closing = False
        # Bound once: these run for every request, __getattr__ would cost each time.
        self.write = transport.write
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.closing or self._transport.is_closing()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            protocol = self._protocol()
            if protocol is None:  # only the transport is left: nothing to linger for
                self._transport.close()
            else:
                protocol.close_connection()


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header, body and time limits (see the module).

    :func:`limited_protocol` makes the subclass that carries the limits; uvicorn
    builds one instance per connection.
    """

    limits: ClassVar[EdgeLimits]
    metrics: ClassVar[Metrics | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_headers = True
        self._header_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._headers_due = False
        self._in_message = False
        self._lingering = False
        self._upgraded = False
        self._raw_transport: asyncio.Transport | None = None
        self._request_started = 0.0

    # Connection and parser callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._raw_transport = transport
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]
        self._request_started = self.loop.time()
        # A client that connects and sends nothing is held no longer than one
        # that sends its headers slowly.
        self._arm(self.limits.header_timeout, self._header_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        # uvicorn stops the keep-alive clock only when the connection ended
        # without an error: a client that reset its connection would leave the
        # timer holding this protocol, its last request and its buffers for
        # the whole keep-alive.
        self._unset_keepalive_if_required()
        super().connection_lost(exc)
        # Pipelined requests that will never run: each holds this protocol
        # (its ``on_response``) and the queue holds each, a reference cycle
        # uvicorn breaks only for a request that runs.
        for queued, _ in self.pipeline:
            queued.on_response = _nothing
        self.pipeline.clear()

    def data_received(self, data: bytes) -> None:
        # Unlike uvicorn's, this does not stop the keep-alive clock: bytes that
        # start no request (the CR/LF the parser skips between messages) must
        # not hold an idle connection open. :meth:`on_message_begin` stops it.
        if self._lingering or self._upgraded:
            return  # refused, or past an Upgrade request: what still arrives is dropped
        if self._reading_headers:
            self._header_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No WebSocket routes: the request is served as plain HTTP, and the
            # connection closed after its response (the parser stops at an
            # upgrade, so nothing after it could be read as a request).
            self._upgraded = True
            if self.cycle is not None:
                self.cycle.keep_alive = False
                if self.cycle.response_complete:
                    self.transport.close()
            return
        except httptools.HttpParserError as exc:
            self._refuse(*_refusal_of(exc))
            return
        if self._reading_headers:
            if self._header_bytes > self.limits.max_header_bytes:
                self._refuse(
                    431,
                    "headers_too_large",
                    f"request headers exceed {self.limits.max_header_bytes} bytes",
                )
            elif self._headers_due:
                # A request began in these bytes without all its headers: they
                # have their own time. (Headers that came whole need no timer.)
                self._headers_due = False
                self._arm(self.limits.header_timeout, self._header_timed_out)
        elif self._in_message and self._deadline is None:
            # The headers are in, the body is not (yet): it has its own time.
            # (A request without a body is complete by now: no timer for it.)
            self._arm(self.limits.body_timeout, self._body_timed_out)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message = True
        # A request starts: the keep-alive clock gives way to the header
        # deadline (a new connection's is already running since it opened).
        # The deadline's timer is armed by data_received, only if the headers
        # are not all in the bytes that began the request.
        self._unset_keepalive_if_required()
        if self._deadline is None:
            self._request_started = self.loop.time()
            self._headers_due = True

    def on_header(self, name: bytes, value: bytes) -> None:
        # Headers and a chunked body's trailers alike (uvicorn adds both to
        # ``headers``): the parser stops at the first one over the count.
        if len(self.headers) >= self.limits.max_headers:
            message = f"more than {self.limits.max_headers} request headers"
            raise _Refused(431, "too_many_headers", message)
        HttpToolsProtocol.on_header(self, name, value)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._headers_due = False
        limits = self.limits
        headers = self.headers
        size = len(self.url)
        has_host = False
        declared_body = 0
        for name, value in headers:  # names are lower case (uvicorn's on_header)
            size += len(name) + len(value) + 4
            if name == b"host":
                has_host = True
            elif name == b"content-length":
                declared_body = int(value)  # digits only; httptools refuses a second length
        if size > limits.max_header_bytes:
            # Arrived in one read: the running count could not stop it earlier.
            message = f"request headers exceed {limits.max_header_bytes} bytes"
            raise _Refused(431, "headers_too_large", message)
        if not has_host and self.parser.get_http_version() == "1.1":
            # RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1
            # request without Host.
            raise _Refused(400, "bad_request", "HTTP/1.1 request without a Host header")
        if declared_body > limits.max_body_bytes:
            # Refused before a byte of the body is read.
            message = f"request body exceeds {limits.max_body_bytes} bytes"
            raise _Refused(413, "payload_too_large", message)
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_message = False
        self._disarm()
        self._reading_headers = True
        self._header_bytes = 0
        if self.cycle is not None and self.cycle.response_complete and not self.pipeline:
            # The application answered before the body was in: the connection
            # is idle only now, so the keep-alive clock starts now.
            self._arm_keep_alive()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._deadline is not None:
            # A request (the next one's headers, or this one's unread body) is
            # still arriving: its deadline, not the keep-alive, bounds it.
            self._unset_keepalive_if_required()

    def close_connection(self) -> None:
        """Close now, or, while the client may still be sending, stop writing and linger."""
        transport = self._raw_transport
        assert transport is not None
        self._disarm()
        if transport.is_closing():
            return
        if not self._in_message or not transport.can_write_eof():
            transport.close()
            return
        self._lingering = True
        transport.write_eof()
        transport.resume_reading()
        self.loop.call_later(LINGER_SECONDS, transport.close)

    # Limits --------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _arm_keep_alive(self) -> None:
        if not self.transport.is_closing() and self.cycle.keep_alive:
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _responding(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _header_timed_out(self) -> None:
        self._deadline = None
        if self._responding():
            # A pipelined request waits behind the current response: close
            # the connection once that response is sent.
            self.cycle.keep_alive = False
            return
        self._refuse(
            408,
            "request_timeout",
            f"request headers not received within {self.limits.header_timeout:g}s",
        )

    def _body_timed_out(self) -> None:
        self._deadline = None
        if self.cycle is not None and self.cycle.response_started:
            # The application answered without reading the whole body: close
            # once its response is sent rather than wait for the rest.
            self.cycle.keep_alive = False
            if self.cycle.response_complete:
                self.transport.close()
            return
        self._refuse(
            408,
            "request_timeout",
            f"request body not received within {self.limits.body_timeout:g}s",
        )

    def _refuse(self, status: int, error: str, message: str) -> None:
        """Answer ``status`` with the JSON error body and close the connection.

        The refusal is recorded once: by the access log when the application
        is already running the request (it then receives a disconnect, and
        what it answers is dropped), else by one ``request refused`` line here,
        and in both cases counted by the metrics with the status sent.
        """
        self._disarm()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        running = (
            cycle is not None
            and not cycle.response_complete
            and all(queued is not cycle for queued, _ in self.pipeline)
        )
        request_id = new_request_id()
        if running:
            scope = cast("dict[str, Any]", cycle.scope)
            scope[REFUSAL_SCOPE_KEY] = Refusal(status, error, message)
            cycle.disconnected = True
            cycle.message_event.set()
            request_id = scope.get(REQUEST_ID_SCOPE_KEY) or request_id
        self.transport.write(refusal_response(status, error, message, request_id))
        self.transport.close()
        if running:
            return
        log.warning(
            "request refused",
            status=status,
            error=error,
            reason=message,
            request_id=request_id,
            peer=self.client[0] if self.client else "",
        )
        if self.metrics is not None:
            self.metrics.record_request("", REFUSED_ROUTE, status, self._elapsed_ms())

    def _elapsed_ms(self) -> float:
        return (self.loop.time() - self._request_started) * 1000


def limited_protocol(
    limits: EdgeLimits, metrics: Metrics | None = None
) -> type[LimitedHttpProtocol]:
    """The protocol class uvicorn should use for a server with ``limits``.

    ``metrics`` (the application's) counts the requests refused before the
    application saw them, under the route :data:`REFUSED_ROUTE`.
    """
    return type(
        "LimitedHttpProtocol", (LimitedHttpProtocol,), {"limits": limits, "metrics": metrics}
    )


class BodyTooLarge(HTTPException):
    """A request body over the limit; answered 413 and the connection closed."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"request body exceeds {limit} bytes", headers={"Connection": "close"}
        )


def counted_receive(scope: Scope, receive: Receive, max_bytes: int) -> tuple[Receive, bool]:
    """The request's ``receive`` bounded to ``max_bytes`` of body, and whether it is over already.

    A declared ``Content-Length`` over the limit is over already: the caller
    answers :func:`answer_body_too_large` before a byte of the body is read.
    On HTTP/1.x a declared length within the limit is all the body there is
    (the server reads no more than it), and a request with neither length nor
    ``Transfer-Encoding`` has no body (RFC 9112, section 6.3): ``receive`` is
    returned as it is. Any other body (chunked, or any over another HTTP
    version, where a length is only advisory) is counted as the application
    receives it: past the limit, the read raises :class:`BodyTooLarge`, which
    the shared exception handler answers.
    """
    counted = not scope.get("http_version", "1.1").startswith("1")
    declared = 0
    for name, value in scope["headers"]:
        if name == b"content-length":
            declared = int(value)  # the parser admits only digits
        elif name == b"transfer-encoding":
            counted = True
    if declared > max_bytes:
        return receive, True
    if not counted:
        return receive, False

    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise BodyTooLarge(max_bytes)
        return message

    return limited_receive, False


async def answer_body_too_large(send: Send, max_bytes: int) -> None:
    """Answer 413 with the JSON error body and ``Connection: close``."""
    body = orjson.dumps(error_body("payload_too_large", f"request body exceeds {max_bytes} bytes"))
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
