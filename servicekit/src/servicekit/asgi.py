"""What the services read about the client and the request from an ASGI request scope."""

from __future__ import annotations

import ipaddress
import random
import re
from typing import NamedTuple

from starlette.types import Scope

REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_SCOPE_KEY = "servicekit.request_id"
"""Scope key holding the request's id once the access log has chosen it (the
edge answers a refusal of a running request with the same id)."""
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
_USER_AGENT_MAX = 256
_ADDRESS_MAX = 45  # the longest textual IPv6 address


class ClientFacts(NamedTuple):
    request_id: str | None  # the incoming X-Request-Id, when it is a valid one
    user_agent: str  # at most 256 characters
    client_ip: str  # the right-most untrusted X-Forwarded-For address, else the peer's
    forwarded: bool  # whether client_ip came from X-Forwarded-For


def new_request_id() -> str:
    """A new request id: 32 hex digits.

    Request ids need to be unique, not unpredictable: no system call per
    request (``uuid.uuid4`` reads ``os.urandom`` each time).
    """
    return f"{random.getrandbits(128):032x}"


def client_facts(scope: Scope, trusted_proxies: int = 1) -> ClientFacts:
    """Read the request id, user agent and client address in one pass over the headers.

    ``trusted_proxies`` is how many proxies in front of the service append to
    ``X-Forwarded-For`` (``TRUSTED_PROXIES``; the ALB is one). Each appends
    the address it received the request from, so the client is the entry
    that many places from the right; entries left of it are whatever the
    client wrote and are never used. With 0, or without the header, the
    client is the peer.
    """
    request_id: str | None = None
    user_agent = ""
    forwarded_for: list[bytes] = []
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if _VALID_REQUEST_ID.match(value):
                request_id = value.decode("ascii")
        elif name == b"user-agent":
            user_agent = value[:_USER_AGENT_MAX].decode("latin-1")
        elif name == b"x-forwarded-for":
            forwarded_for.append(value)
    client_ip = _forwarded_client(forwarded_for, trusted_proxies) if forwarded_for else None
    if client_ip is None:
        client = scope.get("client")
        return ClientFacts(request_id, user_agent, client[0] if client else "", False)
    return ClientFacts(request_id, user_agent, client_ip, True)


def request_url(scope: Scope, host: str) -> str:
    """The URL a trace records for the request: scheme, ``host``, mount point and path.

    No query string (it may hold what a trace must not keep) and no
    credentials; ``host`` is the ``Host`` header as the caller read it.
    """
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}{scope['path']}"


def call_url(scheme: str, host: str, port: int | None, path: str) -> str:
    """The URL a trace records for a call out: scheme, host, the port if given, path.

    As :func:`request_url`: no query string and no credentials.
    """
    return f"{scheme}://{host}{f':{port}' if port else ''}{path}"


def _forwarded_client(values: list[bytes], trusted_proxies: int) -> str | None:
    if trusted_proxies <= 0:
        return None
    hops = b",".join(values).split(b",")
    entry = hops[-trusted_proxies] if len(hops) >= trusted_proxies else hops[0]
    text = entry.strip()[:_ADDRESS_MAX].decode("latin-1")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None  # not an address: the peer's is used
