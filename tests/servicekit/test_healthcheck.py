"""``python -m servicekit.healthcheck``: 200 is healthy, anything else is not; it stays cheap."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from servicekit import healthcheck
from tests.support import ROOT, free_port


@contextmanager
def raw_server(answer: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback TCP server that hands each connection to ``answer``; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def replies(data: bytes, delay: float = 0.0) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(4096)
            if not chunk:
                return
            request += chunk
        assert request.startswith(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:")
        time.sleep(delay)
        conn.sendall(data)

    return answer


@pytest.mark.parametrize(
    ("reply", "healthy"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", True),
        (b"HTTP/1.0 200 OK\r\n\r\n", True),
        (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", False),
        (b"HTTP/1.1 204 No Content\r\n\r\n", False),
        (b"HTTP/1.1 2000 OK\r\n\r\n", False),
        (b"SSH-2.0-OpenSSH_9.2\r\n", False),
        (b"", False),
    ],
)
def test_only_status_200_is_healthy(reply: bytes, healthy: bool) -> None:
    with raw_server(replies(reply)) as port:
        assert healthcheck.check(port) is healthy


def test_status_line_split_across_packets_is_read_whole() -> None:
    def answer(conn: socket.socket) -> None:
        replies(b"HTTP/1.1 2")(conn)
        time.sleep(0.05)
        conn.sendall(b"00 OK\r\n\r\n")

    with raw_server(answer) as port:
        assert healthcheck.check(port) is True


@pytest.mark.serial  # a time bound
def test_a_server_slower_than_the_timeout_is_unhealthy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(healthcheck, "TIMEOUT_SECONDS", 0.2)
    with raw_server(replies(b"HTTP/1.1 200 OK\r\n\r\n", delay=1.0)) as port:
        started = time.monotonic()
        assert healthcheck.check(port) is False
        assert time.monotonic() - started < 0.9


def test_an_endless_line_is_unhealthy() -> None:
    with raw_server(replies(b"x" * 5000)) as port:
        assert healthcheck.check(port) is False


def test_nothing_listening_is_unhealthy() -> None:
    assert healthcheck.check(free_port()) is False


def test_the_check_imports_socket_and_nothing_heavier() -> None:
    """No urllib, http, email, ssl or re: a fresh interpreter runs it every 10 s per task."""
    env = {**os.environ, "PORT": str(free_port()), "PYTHONPATH": str(ROOT / "servicekit" / "src")}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "servicekit.healthcheck"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1  # nothing listens on that port
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "socket" in imported
    heavy = {"urllib", "http", "email", "ssl", "re", "encodings.idna", "json", "logging"}
    found = {name for name in imported if name in heavy or name.split(".")[0] in heavy}
    assert found == set(), sorted(imported)
