"""A client that goes away mid-request is its own doing: a 499 at ``warning``, never a 5xx.

Every route of both services that reads a body (found in their OpenAPI
schemas) is sent its headers and the start of a body, then the client closes
the connection. Each request must be one access line with status 499 at
``warning`` and no traceback, and no ``error`` line may follow: those feed the
5xx metrics, the alarm and the error mail.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import httpx

from tests.integration.conftest import Stack
from tests.support import Service


def body_routes(service: Service) -> Iterator[tuple[str, str, str]]:
    """(method, path with ids filled in, content type) of each route that takes a body."""
    spec = httpx.get(f"{service.url}/openapi.json", timeout=10).json()
    for template, operations in spec["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                content_type = next(iter(operation["requestBody"]["content"]))
                yield method.upper(), re.sub(r"\{[^}]+\}", "1", template), content_type


def leave_mid_body(service: Service, method: str, path: str, content_type: str, rid: str) -> None:
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: {rid}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: 100\r\n\r\nti".encode()
        )
        time.sleep(0.05)  # the application is reading the body


def test_a_client_leaving_mid_body_is_a_499_warning_on_every_route(stack: Stack) -> None:
    sent: list[tuple[Service, str, str]] = []
    for service in (stack.frontend, stack.backend):
        routes = list(body_routes(service))
        assert len(routes) >= 3, f"{service.name}: the schema lists the write routes"
        for number, (method, path, content_type) in enumerate(routes):
            rid = f"leave-{service.name}-{number}"
            leave_mid_body(service, method, path, content_type, rid)
            sent.append((service, f"{method} {path}", rid))
    for service, route, rid in sent:
        [line] = service.access_lines_for(rid, 1)
        assert (line["status"], line["level"]) == (499, "warning"), route
        assert "exception" not in line, route
    for service in (stack.frontend, stack.backend):
        errors = [line for line in service.log_lines() if line["level"] in ("error", "critical")]
        assert errors == [], errors[:2]
