"""The HTTP edge of a real servicekit process: body, header and time limits.

Each test talks raw HTTP/1.1 over a socket, as a hostile or broken client
would, and checks the answer and that the connection is closed.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servicekit.conftest import start_sample
from tests.support import Service

TIMEOUT = 1.0  # the header and body timeouts of the sample under test


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_sample(
        tmp_path_factory.mktemp("edge"),
        HTTP_HEADER_TIMEOUT_SECONDS=str(TIMEOUT),
        HTTP_BODY_TIMEOUT_SECONDS=str(TIMEOUT),
        MAX_REQUEST_BODY_BYTES="4096",
        MAX_REQUEST_HEADER_BYTES="8192",
        MAX_REQUEST_HEADERS="50",
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


def test_content_length_over_the_limit_is_413_before_the_body_is_sent(edge: Service) -> None:
    with connect(edge) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10485760\r\n\r\n"
        )
        status, headers, body, closed = read_response(sock)  # no body byte was sent
    assert status == 413
    assert headers["connection"] == "close"
    assert error_of(body)["error"] == "payload_too_large"
    assert closed


def test_chunked_body_over_the_limit_is_413(edge: Service) -> None:
    chunk = b'{"a":"' + b"x" * 1000 + b'"}'
    with connect(edge) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        try:
            for _ in range(20):  # 20 KB, five times the limit, never ended
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, headers, body, closed = read_response(sock)
    assert status == 413
    assert headers["connection"] == "close"
    assert error_of(body)["error"] == "payload_too_large"
    assert closed


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
        status, response_headers, body, closed = read_response(sock)
    assert status == 431
    assert response_headers["connection"] == "close"
    assert error_of(body)["error"] == error
    assert closed


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


def test_a_kept_alive_connection_serves_requests_and_refusals_are_logged(edge: Service) -> None:
    with connect(edge) as sock:
        for _ in range(3):
            sock.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _ = read_response_keep_alive(sock)
            assert status == 200
            assert headers.get("connection") != "close"
            # Idle between requests is the keep-alive's to bound, not the header timeout's.
            time.sleep(TIMEOUT * 1.5)
    refused = [line for line in edge.log_lines() if line.get("event") == "request refused"]
    assert refused, "each refusal is one warning line"
    assert all(line["level"] == "warning" and line["status"] >= 400 for line in refused)
    assert all(len(json.dumps(line)) < 1000 for line in refused)


def read_response_keep_alive(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


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
