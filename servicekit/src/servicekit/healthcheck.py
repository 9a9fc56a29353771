"""``python -m servicekit.healthcheck``: the container health check.

Exits 0 when ``GET http://127.0.0.1:$PORT/healthz`` (or the path given as the
first argument) answers status 200 within ``TIMEOUT_SECONDS``, 1 otherwise.
Liveness, not readiness: an unreachable database must not make the
orchestrator replace a task that is otherwise healthy.

Slim images carry no curl, so the check is Python; the orchestrator starts a
fresh interpreter for it every 10 seconds in every task, for as long as the
task runs, so what it imports is what it costs. It imports ``socket`` and
nothing else (no ``urllib``, whose HTTP, e-mail and TLS modules are most of
the CPU of a check; docs/performance.md): one request line, one status line.
"""

import os
import socket
import sys
import time

TIMEOUT_SECONDS = 2.0
# A status line is short; a server that sends more without a line end is not healthy.
MAX_STATUS_LINE = 1024


def check(port: int, path: str = "/healthz") -> bool:
    """True if the server on 127.0.0.1:``port`` answers ``path`` with status 200 in time."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    try:
        # A numeric address and no create_connection(): getaddrinfo() would
        # import the IDNA codec (and with it re and unicodedata) to encode it.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as conn:
            conn.settimeout(TIMEOUT_SECONDS)
            conn.connect(("127.0.0.1", port))
            conn.sendall(request.encode("ascii"))
            received = b""
            while b"\n" not in received and len(received) < MAX_STATUS_LINE:
                conn.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = conn.recv(MAX_STATUS_LINE)
                if not chunk:
                    break
                received += chunk
    except (OSError, UnicodeEncodeError):
        return False
    status_line = received.split(b"\n", 1)[0]
    # "HTTP/1.1 200 OK": the version, then the three-digit status code.
    parts = status_line.split(None, 2)
    return len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1] == b"200"


def main() -> int:
    port = int(os.environ.get("PORT", "8080"))
    path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
    return 0 if check(port, path) else 1


if __name__ == "__main__":
    raise SystemExit(main())
