"""What the services read about the client from an ASGI request scope."""

from __future__ import annotations

import random
import re
from typing import NamedTuple

from starlette.types import Scope

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
_USER_AGENT_MAX = 256


class ClientFacts(NamedTuple):
    request_id: str | None  # the incoming X-Request-Id, when it is a valid one
    user_agent: str  # at most 256 characters
    client_ip: str  # the left-most X-Forwarded-For address, else the peer's
    forwarded: bool  # whether client_ip came from X-Forwarded-For


def new_request_id() -> str:
    """A new request id: 32 hex digits.

    Request ids need to be unique, not unpredictable: no system call per
    request (``uuid.uuid4`` reads ``os.urandom`` each time).
    """
    return f"{random.getrandbits(128):032x}"


def client_facts(scope: Scope) -> ClientFacts:
    """Read the request id, user agent and client address in one pass over the headers."""
    request_id: str | None = None
    user_agent = ""
    forwarded_for = b""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if _VALID_REQUEST_ID.match(value):
                request_id = value.decode("ascii")
        elif name == b"user-agent":
            user_agent = value[:_USER_AGENT_MAX].decode("latin-1")
        elif name == b"x-forwarded-for":
            forwarded_for = value
    if forwarded_for:
        # Behind the ALB the left-most address is the client's.
        client_ip = forwarded_for.split(b",", 1)[0].strip().decode("latin-1")
    else:
        client = scope.get("client")
        client_ip = client[0] if client else ""
    return ClientFacts(request_id, user_agent, client_ip, bool(forwarded_for))
