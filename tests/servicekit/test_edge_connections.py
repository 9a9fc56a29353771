"""A connection, however it ends, leaves nothing behind in the server.

The services make the garbage collector's full collections rare
(:func:`servicekit.runner.tune_garbage_collector`), so what a connection
leaves must be freed by reference counting alone, at once: an object of a
reference cycle waits for a full collection, and memory grows with the
connections a service has served. Clients end connections in many ways (a
load balancer replacing its connections, a load generator stopping with
requests in flight, a browser going away), so each way is tried here.

The sample service runs on a real uvicorn server with the services' own
configuration (:func:`servicekit.runner.build_config`, hence
:class:`servicekit.edge.LimitedHttpProtocol`) in a thread of the test
process, whose collector the test controls; each loop the services may run
on is tried.
"""

from __future__ import annotations

import gc
import http.client
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import uvicorn

from servicekit.edge import LimitedHttpProtocol
from servicekit.runner import build_config
from tests.servicekit.sample_service import SampleSettings, create_app
from tests.support import free_port

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


@pytest.fixture(params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[uvicorn.Server]:
    settings = SampleSettings(
        port=free_port(),
        log_level="WARNING",
        http_keep_alive_seconds=KEEP_ALIVE_SECONDS,
        max_request_header_bytes=8192,
        tracing_enabled=False,
    )
    config = build_config(create_app(settings), settings)
    config.loop = request.param
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.02)
            assert thread.is_alive(), "the sample service failed to start"
        yield server
    finally:
        server.should_exit = True
        thread.join(10)


def connection(server: uvicorn.Server) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.config.port, timeout=5)


def reset(conn: http.client.HTTPConnection) -> None:
    """Close with a reset (RST) instead of a FIN, as a client that gives up does."""
    assert conn.sock is not None
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def answered(conn: http.client.HTTPConnection, path: str = "/ok") -> None:
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    assert response.status == 200


def closed_after_connection_close(server: uvicorn.Server) -> None:
    conn = connection(server)
    conn.request("GET", "/ok", headers={"Connection": "close"})
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    assert response.will_close
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
    with socket.create_connection(("127.0.0.1", server.config.port)) as sock:
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: 127")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def opened_and_closed_without_a_request(server: uvicorn.Server) -> None:
    socket.create_connection(("127.0.0.1", server.config.port)).close()


def refused_by_the_server(server: uvicorn.Server) -> None:
    conn = connection(server)
    conn.request("GET", "/ok", headers={"X-Big": "x" * 9000})
    response = conn.getresponse()
    response.read()
    assert response.status == 431
    conn.close()


ENDINGS: list[Callable[[uvicorn.Server], None]] = [
    closed_after_connection_close,
    closed_by_the_client_when_idle,
    reset_by_the_client_when_idle,
    reset_by_the_client_while_its_request_runs,
    reset_in_the_middle_of_the_headers,
    opened_and_closed_without_a_request,
    refused_by_the_server,
]


def live_protocols() -> int:
    return sum(isinstance(obj, LimitedHttpProtocol) for obj in gc.get_objects())


def wait_until_idle(server: uvicorn.Server) -> None:
    """Until the server has seen every connection end and every request finish."""
    state = server.server_state
    deadline = time.monotonic() + 10
    while state.connections or state.tasks:
        assert time.monotonic() < deadline, f"{len(state.connections)} connections still open"
        time.sleep(0.02)
    time.sleep(0.1)  # the last connection_lost callbacks run after the set is emptied


@pytest.mark.parametrize("end", ENDINGS, ids=lambda end: end.__name__)
def test_a_connection_leaves_nothing_behind(
    server: uvicorn.Server, end: Callable[..., None]
) -> None:
    closed_by_the_client_when_idle(server)  # warm up: what the first request creates once
    wait_until_idle(server)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        held_open = connection(server)
        answered(held_open)
        # The census sees a connection while it is open: the test can fail.
        assert live_protocols() == 1
        held_open.close()
        for _ in range(5):
            end(server)
        wait_until_idle(server)
        gc.collect()
        cyclic = Counter(
            name
            for name in (f"{type(obj).__module__}.{type(obj).__qualname__}" for obj in gc.garbage)
            if name.startswith(WATCHED_MODULES) and name not in STANDARD_LIBRARY_CYCLES
        )
        held = live_protocols()
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert cyclic == {}, "left in reference cycles, freed only by a full collection"
    assert held == 0, "connections held after they ended (by a timer or a reference)"
