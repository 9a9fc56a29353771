"""A connection, however it ends, leaves nothing behind in the server.

The services make the garbage collector's collections rare
(:func:`servicekit.runner.tune_garbage_collector`), so what a connection
leaves must be freed by reference counting alone, at once: an object of a
reference cycle waits for a collection, and memory grows with the
connections a service has served. Clients end connections in many ways (a
load balancer replacing its connections, a load generator stopping with
requests in flight, a browser going away), and requests end in errors the
server or the framework answers (a refusal, a timeout, a body that is not
JSON, an unhandled exception), so each is tried here.

The sample service runs on a real uvicorn server with the services' own
configuration (:func:`servicekit.runner.build_config`, hence
:class:`servicekit.edge.LimitedHttpProtocol`) in a thread of the test
process, whose collector the test controls; each loop the services may run
on is tried.
"""

from __future__ import annotations

import asyncio
import gc
import http.client
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn

from servicekit.edge import LimitedHttpProtocol
from servicekit.logs import configure_logging
from servicekit.runner import build_config
from tests.servicekit.sample_service import SampleSettings, create_app
from tests.support import cycles_left, free_port, server_in_thread

# Modules whose objects must never be left in a reference cycle by a connection.
WATCHED_MODULES = ("servicekit.", "uvicorn.", "starlette.", "fastapi.", "uvloop.", "asyncio.")
# asyncio's own selector transport holds a bound method of itself
# (``_read_ready_cb``, Python 3.11): a cycle of the standard library, on the
# loop the services use only where uvloop is missing.
STANDARD_LIBRARY_CYCLES = {
    "asyncio.selector_events._SelectorSocketTransport",
    "asyncio.trsock.TransportSocket",
}
# Long enough that a timer it arms would outlive the test.
KEEP_ALIVE_SECONDS = 75
# The body timeout: short, so that the ending it causes is quick.
BODY_TIMEOUT_SECONDS = 0.5
REPEATS = 5  # connections ended each way


class Counts:
    """Connections the server has seen open and end."""

    made = 0
    lost = 0


@pytest.fixture(params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[uvicorn.Server]:
    # The services' JSON lines (structlog's console renderer, its default,
    # makes cycles of its own when it renders a traceback), at a level that
    # renders no error: what an error leaves must not depend on whether its
    # line is written.
    configure_logging("sample", "CRITICAL")
    settings = SampleSettings(
        port=free_port(),
        log_level="CRITICAL",
        http_keep_alive_seconds=KEEP_ALIVE_SECONDS,
        http_body_timeout_seconds=BODY_TIMEOUT_SECONDS,
        max_request_header_bytes=8192,
        tracing_enabled=False,
    )
    config = build_config(create_app(settings), settings)
    config.loop = request.param
    protocol = config.http
    assert isinstance(protocol, type)

    class Counted(protocol):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: Any) -> None:
            Counts.made += 1
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            Counts.lost += 1

    config.http = Counted
    with server_in_thread(config) as server:
        yield server


def connection(server: uvicorn.Server) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.config.port, timeout=5)


def raw(server: uvicorn.Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.config.port))
    sock.settimeout(5)
    return sock


def reset_socket(sock: socket.socket) -> None:
    """Close with a reset (RST) instead of a FIN, as a client that gives up does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def reset(conn: http.client.HTTPConnection) -> None:
    assert conn.sock is not None
    reset_socket(conn.sock)
    conn.close()


def answered(
    conn: http.client.HTTPConnection,
    path: str = "/ok",
    status: int = 200,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> http.client.HTTPResponse:
    """The response to one request on ``conn``, read whole, after checking its status."""
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    response.read()
    assert response.status == status
    return response


def closed_after_connection_close(server: uvicorn.Server) -> None:
    conn = connection(server)
    assert answered(conn, headers={"Connection": "close"}).will_close
    conn.close()


def closed_by_the_client_when_idle(server: uvicorn.Server) -> None:
    conn = connection(server)
    answered(conn)
    conn.close()


def reset_by_the_client_when_idle(server: uvicorn.Server) -> None:
    conn = connection(server)
    answered(conn)
    reset(conn)


def reset_by_the_client_while_its_request_runs(server: uvicorn.Server) -> None:
    conn = connection(server)
    answered(conn)
    conn.request("GET", "/sleep?seconds=0.2")
    reset(conn)


def reset_in_the_middle_of_the_headers(server: uvicorn.Server) -> None:
    sock = raw(server)
    sock.sendall(b"GET /ok HTTP/1.1\r\nHost: 127")
    reset_socket(sock)


def opened_and_closed_without_a_request(server: uvicorn.Server) -> None:
    raw(server).close()


def refused_by_the_server(server: uvicorn.Server) -> None:
    conn = connection(server)
    answered(conn, headers={"X-Big": "x" * 9000}, status=431)
    conn.close()


def read_to_the_end(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


PARTIAL_BODY = (
    b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
)


def pipelined_then_closed_by_the_client(server: uvicorn.Server) -> None:
    sock = raw(server)
    sock.sendall(get("/sleep?seconds=0.1") + get("/ok"))  # the second waits behind the first
    time.sleep(0.02)
    sock.close()


def pipelined_then_reset_by_the_client(server: uvicorn.Server) -> None:
    sock = raw(server)
    sock.sendall(get("/sleep?seconds=0.1") + get("/ok"))
    time.sleep(0.02)
    reset_socket(sock)


def reset_in_the_middle_of_the_body(server: uvicorn.Server) -> None:
    sock = raw(server)
    sock.sendall(PARTIAL_BODY)
    time.sleep(0.05)  # the application is reading the body
    reset_socket(sock)


def body_timed_out_while_the_application_reads_it(server: uvicorn.Server) -> None:
    sock = raw(server)
    sock.sendall(PARTIAL_BODY)
    assert b" 408 " in read_to_the_end(sock).split(b"\r\n", 1)[0]
    sock.close()


def answered_422_for_a_body_that_is_not_json(server: uvicorn.Server) -> None:
    conn = connection(server)
    answered(conn, "/echo", 422, "POST", b"{", {"Content-Type": "application/json"})
    conn.close()


def answered_500_for_an_unhandled_error(server: uvicorn.Server) -> None:
    conn = connection(server)
    answered(conn, "/boom", 500)
    conn.close()


ENDINGS: list[Callable[[uvicorn.Server], None]] = [
    closed_after_connection_close,
    closed_by_the_client_when_idle,
    reset_by_the_client_when_idle,
    reset_by_the_client_while_its_request_runs,
    reset_in_the_middle_of_the_headers,
    opened_and_closed_without_a_request,
    refused_by_the_server,
    pipelined_then_closed_by_the_client,
    pipelined_then_reset_by_the_client,
    reset_in_the_middle_of_the_body,
    body_timed_out_while_the_application_reads_it,
    answered_422_for_a_body_that_is_not_json,
    answered_500_for_an_unhandled_error,
]


def live_protocols() -> int:
    return sum(isinstance(obj, LimitedHttpProtocol) for obj in gc.get_objects())


def wait_until_idle(server: uvicorn.Server, connections: int) -> None:
    """Until the server has seen ``connections`` open and end, and every request finish."""
    deadline = time.monotonic() + 10
    while Counts.made < connections or Counts.lost < Counts.made or server.server_state.tasks:
        assert time.monotonic() < deadline, (
            f"{Counts.made} of {connections} connections seen, {Counts.lost} ended, "
            f"{len(server.server_state.tasks)} requests running"
        )
        time.sleep(0.02)
    # One more pass of the loop: whatever the last callbacks scheduled has run.
    loop = server.servers[0].get_loop()
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(5)


@pytest.mark.parametrize("end", ENDINGS, ids=lambda end: end.__name__)
def test_a_connection_leaves_nothing_behind(
    server: uvicorn.Server, end: Callable[..., None]
) -> None:
    closed_by_the_client_when_idle(server)  # warm up: what the first request creates once
    wait_until_idle(server, Counts.made)
    # This module's names too: the protocol class under test is defined here.
    with cycles_left((*WATCHED_MODULES, f"{__name__}."), STANDARD_LIBRARY_CYCLES) as cyclic:
        expected = Counts.made + 1 + REPEATS
        held_open = connection(server)
        answered(held_open)
        # The census sees a connection while it is open: the test can fail.
        assert live_protocols() == 1
        held_open.close()
        for _ in range(REPEATS):
            end(server)
        wait_until_idle(server, expected)
    assert cyclic == {}, "left in reference cycles, freed only by a full collection"
    held = live_protocols()
    assert held == 0, "connections held after they ended (by a timer or a reference)"
