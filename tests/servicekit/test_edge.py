"""The HTTP edge of a real servicekit process: body, header and time limits.

Each test talks raw HTTP/1.1 over a socket, as a hostile or broken client
would, and checks the answer and that the connection is closed. Every test
stands alone: CI runs each of them in a process of its own.

A connection is always under exactly one deadline: the header timeout from
the connection (or from the first byte of a later request), the body timeout
from the headers, the response being written, or the keep-alive from the end
of the last response. Bytes that start no request (CR/LF between messages)
move none of them.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from tests.servicekit.conftest import start_sample
from tests.support import Service

# They measure timeouts, with time bounds: dev.py test runs them alone.
# Left out by dev.py test --quick (servicekit: test_logs and test_healthcheck run real processes).
pytestmark = [pytest.mark.serial, pytest.mark.slow]

TIMEOUT = 1.0  # the header and body timeouts of the sample under test
KEEP_ALIVE = 3  # its keep-alive (whole seconds)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_sample(
        tmp_path_factory.mktemp("edge"),
        HTTP_HEADER_TIMEOUT_SECONDS=str(TIMEOUT),
        HTTP_BODY_TIMEOUT_SECONDS=str(TIMEOUT),
        MAX_REQUEST_BODY_BYTES="4096",
        MAX_REQUEST_HEADER_BYTES="8192",
        MAX_REQUEST_HEADERS="50",
        HTTP_KEEP_ALIVE_SECONDS=str(KEEP_ALIVE),
        ALLOWED_HOSTS="x",  # the Host these tests send
        METRICS_INTERVAL_SECONDS="1",
    )
    yield service
    service.stop()


def connect(service: Service) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.port), timeout=10)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes, bool]:
    """Status, headers, body, and whether the server then closed the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    try:
        closed = sock.recv(1) == b""
    except ConnectionResetError:
        closed = True
    return status, headers, body, closed


def error_of(body: bytes) -> dict[str, Any]:
    parsed = json.loads(body)
    assert set(parsed) >= {"error", "message", "request_id"}
    assert parsed["request_id"]
    return dict(parsed)


def send_until_refused(sock: socket.socket, pieces: Iterable[bytes]) -> None:
    """Send each piece; the server may refuse and close the connection midway."""
    try:
        for piece in pieces:
            sock.sendall(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass


def refusal_of(sock: socket.socket) -> tuple[int, str]:
    """The status and error code of a refusal; the answer says close and the server closes."""
    status, headers, body, closed = read_response(sock)
    assert headers["connection"] == "close"
    assert closed
    return status, error_of(body)["error"]


def test_content_length_over_the_limit_is_413_before_the_body_is_sent(edge: Service) -> None:
    with connect(edge) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10485760\r\n\r\n"
        )
        refused = refusal_of(sock)  # no body byte was sent
    assert refused == (413, "payload_too_large")


def test_chunked_body_over_the_limit_is_413(edge: Service) -> None:
    chunk = b'{"a":"' + b"x" * 1000 + b'"}'
    with connect(edge) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        # 20 KB, five times the limit, never ended.
        send_until_refused(sock, [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 20)
        refused = refusal_of(sock)
    assert refused == (413, "payload_too_large")


def test_body_within_the_limit_is_served(edge: Service) -> None:
    payload = json.dumps({"a": "x" * 3000}).encode()
    with connect(edge) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
        )
        status, _, body = read_response_keep_alive(sock)
    assert (status, json.loads(body)) == (200, {"keys": 1})


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        (b"X-Big: " + b"a" * 20_000 + b"\r\n", "headers_too_large"),
        (b"".join(b"X-H%d: v\r\n" % i for i in range(60)), "too_many_headers"),
    ],
)
def test_oversized_headers_are_431(edge: Service, headers: bytes, error: str) -> None:
    with connect(edge) as sock:
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        refused = refusal_of(sock)
    assert refused == (431, error)


def test_trailers_count_with_the_headers(edge: Service) -> None:
    """A chunked body's trailers are kept with the headers: the count bounds them too.

    Without it, trailer lines sent within the body's time would pile up in
    memory (their bytes are not header bytes).
    """
    with connect(edge) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
        )
        send_until_refused(sock, [b"X-T: v\r\n" * 20] * 20)  # 400 trailer lines
        refused = refusal_of(sock)
    assert refused == (431, "too_many_headers")


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"GET /ok HTTP/1.1\r\nHost: x\r\n",
        b"GET /ok HTTP/1.1\r\nHo",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"a":',
    ],
    ids=["nothing", "headers-unfinished", "header-line-unfinished", "body-unfinished"],
)
def test_slow_headers_or_body_are_408_within_the_timeout(edge: Service, sent: bytes) -> None:
    with connect(edge) as sock:
        start = time.monotonic()
        sock.sendall(sent)
        status, _, body, closed = read_response(sock)
        elapsed = time.monotonic() - start
    assert status == 408
    assert error_of(body)["error"] == "request_timeout"
    assert closed
    assert TIMEOUT * 0.8 < elapsed < TIMEOUT + 1.5


def test_headers_sent_a_byte_at_a_time_are_cut_at_the_timeout(edge: Service) -> None:
    request = b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000 + b"\r\n\r\n"
    with connect(edge) as sock:
        start = time.monotonic()
        sent = 0
        for byte in request:
            sock.sendall(bytes([byte]))
            sent += 1
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable or time.monotonic() - start > TIMEOUT + 3:
                break
        status, _, body, closed = read_response(sock)
        elapsed = time.monotonic() - start
    assert sent < len(request)
    assert (status, error_of(body)["error"], closed) == (408, "request_timeout", True)
    assert elapsed < TIMEOUT + 1.5


def test_http11_without_host_is_400_and_http10_is_served(edge: Service) -> None:
    with connect(edge) as sock:
        sock.sendall(b"GET /ok HTTP/1.1\r\n\r\n")
        status, _, body, closed = read_response(sock)
    assert (status, error_of(body)["error"], closed) == (400, "bad_request", True)
    with connect(edge) as sock:
        sock.sendall(b"GET /ok HTTP/1.0\r\n\r\n")
        status, _, _ = read_response_keep_alive(sock)
    assert status == 200


def test_malformed_request_is_a_json_400(edge: Service) -> None:
    with connect(edge) as sock:
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n")
        status, _, body, closed = read_response(sock)
    assert (status, error_of(body)["error"], closed) == (400, "bad_request", True)


def test_a_kept_alive_connection_serves_requests(edge: Service) -> None:
    with connect(edge) as sock:
        for _ in range(3):
            sock.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _ = read_response_keep_alive(sock)
            assert status == 200
            assert headers.get("connection") != "close"
            # Idle between requests is the keep-alive's to bound, not the header timeout's.
            time.sleep(TIMEOUT * 1.5)


def test_a_refusal_is_one_warning_line_and_counted(edge: Service) -> None:
    with connect(edge) as sock:
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n")
        status, _, body, _ = read_response(sock)
    request_id = error_of(body)["request_id"]
    lines = edge.wait_for_lines(lambda line: line.get("request_id") == request_id)
    assert [(line["event"], line["level"], line["status"]) for line in lines] == [
        ("request refused", "warning", 400)
    ]
    assert len(json.dumps(lines[0])) < 1000
    assert status == 400
    assert route_count(edge, "(refused)", "Status4xx") >= 1


def test_a_body_timeout_is_recorded_with_the_status_the_client_got(edge: Service) -> None:
    """The application was already reading the body: its access line says 408, once."""
    with connect(edge) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"a":'
        )
        status, _, body, closed = read_response(sock)
    request_id = error_of(body)["request_id"]
    assert (status, closed) == (408, True)
    time.sleep(0.5)  # any second line would be written by now
    lines = edge.wait_for_lines(lambda line: line.get("request_id") == request_id)
    assert [(line["event"], line["level"], line["status"]) for line in lines] == [
        ("request", "warning", 408)
    ]
    assert lines[0]["refused"] == "request_timeout"
    assert route_count(edge, "POST /echo", "Status4xx") >= 1


def wait_closed(sock: socket.socket, limit: float, trickle: bytes = b"") -> tuple[float, bytes]:
    """Seconds until the server closes ``sock`` (at most ``limit``) and what it sent meanwhile.

    With ``trickle``, those bytes are sent every 0.5 s while waiting.
    """
    start = time.monotonic()
    next_send = start + 0.5
    received = b""
    while (now := time.monotonic()) - start < limit:
        if trickle and now >= next_send:
            try:
                sock.sendall(trickle)
            except (BrokenPipeError, ConnectionResetError):
                return now - start, received
            next_send += 0.5
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return time.monotonic() - start, received
            received += chunk
    return limit, received


def served(sock: socket.socket) -> None:
    sock.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response_keep_alive(sock)[0] == 200


@pytest.mark.parametrize("trickle", [b"", b"\r\n"], ids=["silent", "crlf-every-0.5s"])
def test_a_new_connection_is_held_no_longer_than_the_header_timeout(
    edge: Service, trickle: bytes
) -> None:
    with connect(edge) as sock:
        held, received = wait_closed(sock, TIMEOUT + 3, trickle)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert held < TIMEOUT + 1.5


@pytest.mark.parametrize(
    ("once", "trickle"),
    [(b"", b""), (b"\r\n", b""), (b"", b"\r\n")],
    ids=["idle", "crlf-once", "crlf-every-0.5s"],
)
def test_an_idle_kept_alive_connection_is_closed_at_the_keep_alive(
    edge: Service, once: bytes, trickle: bytes
) -> None:
    """CR/LF between requests starts no request: the keep-alive clock runs on."""
    with connect(edge) as sock:
        served(sock)
        sock.sendall(once)
        held, received = wait_closed(sock, KEEP_ALIVE + 4, trickle)
    assert received == b""  # closed without a word: no request was started
    assert KEEP_ALIVE - 0.5 < held < KEEP_ALIVE + 1.5


def test_a_request_started_on_a_kept_alive_connection_has_the_header_timeout(
    edge: Service,
) -> None:
    with connect(edge) as sock:
        served(sock)
        time.sleep(KEEP_ALIVE / 2)
        sock.sendall(b"\r\nGET /ok HTTP/1.1\r\nHo")
        held, received = wait_closed(sock, KEEP_ALIVE + 3)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert TIMEOUT * 0.8 < held < TIMEOUT + 1.5


def test_a_pipelined_request_waits_behind_a_slow_response(edge: Service) -> None:
    """The second request is answered after the first, on the same connection."""
    with connect(edge) as sock:
        start = time.monotonic()
        sock.sendall(
            b"GET /sleep?seconds=1.5 HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        (first, _, first_body), (second, headers, second_body) = read_responses(sock, 2)
        elapsed = time.monotonic() - start
        served(sock)  # still open: neither waited past a deadline
    assert (first, json.loads(first_body)) == (200, {"slept": 1.5})
    assert (second, json.loads(second_body)) == (200, {"status": "ok"})
    assert headers.get("connection") != "close"
    assert elapsed >= 1.5  # longer than the header timeout: the waiting request was not cut


def test_a_pipelined_request_unfinished_behind_a_slow_response_ends_the_connection(
    edge: Service,
) -> None:
    """Its header timeout passes while the first response is written: closed after it."""
    with connect(edge) as sock:
        sock.sendall(b"GET /sleep?seconds=2 HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\n")
        held, received = wait_closed(sock, KEEP_ALIVE + 3)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in received.lower()
    assert 2 <= held < 2 + 1.5


def test_a_body_deadline_runs_on_after_the_application_answered(edge: Service) -> None:
    """A 405 answered before the body arrived: the body timeout still closes the connection."""
    with connect(edge) as sock:
        sock.sendall(b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        held, received = wait_closed(sock, KEEP_ALIVE + 3)
    assert received.startswith(b"HTTP/1.1 405 ")
    assert held < TIMEOUT + 1.5


def test_a_body_finished_after_the_application_answered_starts_the_keep_alive(
    edge: Service,
) -> None:
    with connect(edge) as sock:
        sock.sendall(b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
        assert read_response_keep_alive(sock)[0] == 405
        sock.sendall(b"def")  # the rest of the body, inside the body timeout: now idle
        held, received = wait_closed(sock, KEEP_ALIVE + 4)
    assert received == b""
    assert KEEP_ALIVE - 0.5 < held < KEEP_ALIVE + 1.5


def test_an_upgrade_request_is_served_as_http_and_the_connection_closed(edge: Service) -> None:
    """No route takes WebSocket: the request is plain HTTP, and nothing after it is read."""
    with connect(edge) as sock:
        sock.sendall(
            b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        held, received = wait_closed(sock, KEEP_ALIVE + 3)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert received.count(b"HTTP/1.1 ") == 1
    assert held < 1.5


def route_count(service: Service, route: str, metric: str, timeout: float = 5) -> int:
    """The sum of ``metric`` over the EMF lines of ``route``, once one is written."""
    deadline = time.monotonic() + timeout
    while True:
        total = sum(
            line.get(metric, 0)
            for line in service.log_lines()
            if line.get("logger") == "servicekit.metrics" and line.get("Route") == route
        )
        if total or time.monotonic() > deadline:
            return total
        time.sleep(0.1)


def read_response_keep_alive(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    return read_responses(sock, 1)[0]


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` responses with a ``Content-Length`` read from a kept-alive connection."""
    data = b""
    responses = []
    while len(responses) < count:
        while b"\r\n\r\n" not in data:
            data += receive(sock)
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(data) < length:
            data += receive(sock)
        responses.append((int(lines[0].split()[1]), headers, data[:length]))
        data = data[length:]
    assert data == b"", "no more than the responses asked for"
    return responses


def receive(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    assert chunk, "the server closed the connection"
    return chunk


@pytest.mark.parametrize(
    "variable",
    [
        {"max_request_body_bytes": 10},
        {"max_request_header_bytes": 100},
        {"max_request_headers": 0},
        {"http_header_timeout_seconds": 0},
        {"http_body_timeout_seconds": -1},
        {"http_keep_alive_seconds": 0},
        {"trusted_proxies": -1},
    ],
)
def test_limits_refuse_values_that_disable_them(variable: dict[str, object]) -> None:
    from pydantic import ValidationError  # noqa: PLC0415

    from tests.servicekit.sample_service import SampleSettings  # noqa: PLC0415

    with pytest.raises(ValidationError):
        SampleSettings(**variable)  # type: ignore[arg-type]
