"""The private uvicorn and httptools interfaces servicekit.edge relies on, one test each.

``servicekit.edge`` extends uvicorn's httptools protocol: it overrides its
parser callbacks and reads and writes its per-connection and per-request
state. None of that is public API, so ``servicekit/pyproject.toml`` keeps
uvicorn and httptools below their next minor, and these tests name the hook
that an upgrade removed or changed. They run one real request through a
server built on the edge's protocol class.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from servicekit.edge import EdgeLimits, LimitedHttpProtocol, limited_protocol

LIMITS = EdgeLimits(4096, 8192, 50, 5.0, 5.0)

# Protocol state the edge reads or writes, and what for.
PROTOCOL_STATE = {
    "parser": "feeds bytes and asks the HTTP version (Host rule)",
    "cycle": "the request being served: refusals disconnect it, deadlines close after it",
    "pipeline": "whether a refused request is still queued behind another; emptied when lost",
    "url": "the request line's size, counted against MAX_REQUEST_HEADER_BYTES",
    "headers": "the header sizes and Content-Length, checked before the body",
    "loop": "the deadlines' timers",
    "client": "the peer address of a refusal line",
    "transport": "writes a refusal and closes",
    "timeout_keep_alive": "the keep-alive, re-armed when a body ends after its response",
    "timeout_keep_alive_task": "the keep-alive timer, stopped only when a request starts",
}
# Protocol methods the edge overrides (calling uvicorn's) or calls.
PROTOCOL_METHODS = {
    "on_message_begin": "starts the header deadline, stops the keep-alive",
    "on_header": "counts headers and trailers, then uvicorn's stores each (name lower case)",
    "on_headers_complete": "checks count, sizes, Host and Content-Length before the app runs",
    "on_message_complete": "ends the body deadline",
    "on_response_complete": "keeps one deadline when a request is still arriving",
    "_unset_keepalive_if_required": "stops the keep-alive timer",
    "timeout_keep_alive_handler": "closes an idle connection",
}
# Request state (RequestResponseCycle) the edge reads or writes.
CYCLE_STATE = {
    "keep_alive": "set False to close after the response",
    "disconnected": "set True when a running request is refused",
    "message_event": "wakes the application's receive() after a refusal",
    "response_started": "a body deadline after the answer began only closes",
    "response_complete": "whether the application still runs the request",
    "scope": "carries the refusal to the access log",
    "on_response": "replaced on a queued request that will never run (its reference cycle)",
}


@pytest.fixture(scope="module")
def served() -> tuple[LimitedHttpProtocol, RequestResponseCycle]:
    """The protocol and request cycle of one request, seen while the application runs it."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        protocol = seen["protocols"][0]
        seen["cycle"] = protocol.cycle
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def run() -> None:
        protocol_class = limited_protocol(LIMITS)
        config = uvicorn.Config(app, http=protocol_class, log_config=None)
        config.load()
        state = ServerState()
        loop = asyncio.get_running_loop()
        protocols: list[LimitedHttpProtocol] = []
        seen["protocols"] = protocols

        def factory() -> LimitedHttpProtocol:
            protocol = protocol_class(config, state, {}, loop)
            protocols.append(protocol)
            return protocol

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 204")
        writer.close()
        server.close()

    asyncio.run(run())
    return seen["protocols"][0], seen["cycle"]


@pytest.mark.parametrize("name", PROTOCOL_STATE)
def test_protocol_state(served: tuple[LimitedHttpProtocol, Any], name: str) -> None:
    protocol, _ = served
    assert hasattr(protocol, name), (
        f"uvicorn's HttpToolsProtocol has no `{name}` any more; servicekit.edge uses it: "
        f"{PROTOCOL_STATE[name]}"
    )


@pytest.mark.parametrize("name", PROTOCOL_METHODS)
def test_protocol_method(name: str) -> None:
    assert callable(getattr(HttpToolsProtocol, name, None)), (
        f"uvicorn's HttpToolsProtocol has no method `{name}` any more; servicekit.edge "
        f"uses it: {PROTOCOL_METHODS[name]}"
    )


@pytest.mark.parametrize("name", CYCLE_STATE)
def test_cycle_state(served: tuple[LimitedHttpProtocol, Any], name: str) -> None:
    _, cycle = served
    assert isinstance(cycle, RequestResponseCycle)
    assert hasattr(cycle, name), (
        f"uvicorn's RequestResponseCycle has no `{name}` any more; servicekit.edge uses it: "
        f"{CYCLE_STATE[name]}"
    )


def test_unset_keepalive_clears_the_keep_alive_timer(
    served: tuple[LimitedHttpProtocol, Any],
) -> None:
    protocol, _ = served
    # The request was answered and the connection closed: build the state again.
    loop = asyncio.new_event_loop()
    try:
        protocol.timeout_keep_alive_task = loop.call_later(60, lambda: None)
        protocol._unset_keepalive_if_required()
        assert protocol.timeout_keep_alive_task is None, (
            "uvicorn's `_unset_keepalive_if_required` no longer clears "
            "`timeout_keep_alive_task`: the edge's keep-alive handling no longer applies"
        )
    finally:
        loop.close()


def test_uvicorn_stores_header_names_in_lower_case() -> None:
    """The edge finds Host and Content-Length among ``headers`` by their lower-case names."""

    class Stub:
        def __init__(self) -> None:
            self.headers: list[tuple[bytes, bytes]] = []
            self.expect_100_continue = False

    stub = Stub()
    HttpToolsProtocol.on_header(stub, b"HoSt", b"X")  # type: ignore[arg-type]
    HttpToolsProtocol.on_header(stub, b"Content-Length", b"3")  # type: ignore[arg-type]
    assert stub.headers == [(b"host", b"X"), (b"content-length", b"3")], (
        "uvicorn's `on_header` no longer lower-cases header names: the edge's Host "
        "and Content-Length checks would miss them"
    )


def test_a_callback_exception_is_the_context_of_httptools_parser_error() -> None:
    """The edge raises its refusal in a parser callback and reads it back from the error."""

    class Refuse(Exception):  # noqa: N818
        pass

    class Callbacks:
        def on_header(self, name: bytes, value: bytes) -> None:
            raise Refuse

    parser = httptools.HttpRequestParser(Callbacks())
    with pytest.raises(httptools.HttpParserError) as caught:
        parser.feed_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(caught.value.__context__, Refuse), (
        "httptools' `HttpParserError` no longer carries a callback's exception as its "
        "__context__: servicekit.edge answers 400 instead of 431/413"
    )


def test_an_upgrade_request_raises_httptools_parser_upgrade() -> None:
    parser = httptools.HttpRequestParser(object())
    with pytest.raises(httptools.HttpParserUpgrade):
        parser.feed_data(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nrest"
        )


def test_the_parser_reports_its_http_version() -> None:
    class Callbacks:
        version = ""

        def on_headers_complete(self) -> None:
            Callbacks.version = parser.get_http_version()

    parser = httptools.HttpRequestParser(Callbacks())
    parser.feed_data(b"GET / HTTP/1.0\r\n\r\n")
    assert Callbacks.version == "1.0", "httptools' `get_http_version` changed"
