"""What a browser is told and what it may send: security headers and same-origin writes.

:class:`BrowserPolicy`, applied to every request of both services by the
service middleware (:mod:`servicekit.middleware`):

* every response says ``X-Content-Type-Options: nosniff``; every HTML page
  also carries :data:`CONTENT_SECURITY_POLICY` (scripts and styles from the
  site's own files only, no inline code, no framing), ``X-Frame-Options:
  DENY`` for browsers older than ``frame-ancestors``, and
  ``Referrer-Policy: same-origin``;
* a request whose ``Host`` names no host of ``ALLOWED_HOSTS`` is refused with
  400 (health checks excepted: the load balancer's name the task's address):
  a page on a domain rebound to the service's address (DNS rebinding) cannot
  read from it. A request without ``Host`` (HTTP/1.0; never a browser) passes;
* a write (``POST``, ``PUT``, ``PATCH``, ``DELETE``) whose ``Origin`` (or,
  without one, ``Referer``) is another origin than the request's own (scheme,
  host and port, the scheme as the load balancer received it:
  ``X-Forwarded-Proto`` when ``TRUSTED_PROXIES`` is above 0) is refused with
  403 before the application sees it: a page elsewhere cannot make a
  visitor's browser add items or mark notifications read. Browsers send
  ``Origin`` with every cross-site write; a request with neither header (an
  API client, a script, the frontend calling the backend) is not a browser's
  cross-site request and passes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from servicekit.errors import http_error
from servicekit.health import HEALTH_PATHS

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI sets style attributes as it renders (development only by default).
DOCS_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_ALWAYS = [(b"x-content-type-options", b"nosniff")]
_HTML = [
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


_POLICY_HEADER = (b"content-security-policy", CONTENT_SECURITY_POLICY.encode())
_DOCS_POLICY_HEADER = (b"content-security-policy", DOCS_CONTENT_SECURITY_POLICY.encode())

_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int | None]


def _split_host(host: str) -> tuple[str, int | None] | None:
    """``host[:port]`` as (lower-case name, port or None); None when it is not one."""
    name, port = host.strip().lower(), ""
    if name.startswith("["):
        name, _, port = name.partition("]")
        name += "]"
        port = port.removeprefix(":")
    elif ":" in name:
        name, _, port = name.rpartition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip("."), int(port) if port else None


def _source_origin(headers: dict[bytes, bytes]) -> Origin | None:
    """The (scheme, host, port) a write came from per ``Origin``/``Referer``; None when
    neither says, ``("", "", None)`` when it is no origin this service can have."""
    source = headers.get(b"origin") or headers.get(b"referer")
    if source is None:
        return None
    try:
        parts = urlsplit(source.decode("latin-1").strip())  # "null": an opaque origin
    except ValueError:  # not a URL (an unclosed IPv6 bracket, say)
        return ("", "", None)
    scheme = parts.scheme.lower()
    host = _split_host(parts.netloc.rpartition("@")[2])
    if scheme not in _DEFAULT_PORTS or host is None:
        return ("", "", None)
    return scheme, host[0], host[1] or _DEFAULT_PORTS[scheme]


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """Whether ``host`` (a ``Host`` header's name, no port) is one of ``allowed``
    (exact names, or ``.example.com`` for the domain and its subdomains)."""
    for entry in allowed:
        if host == entry or (entry.startswith(".") and (host.endswith(entry) or host == entry[1:])):
            return True
    return False


class BrowserPolicy:
    """What a service tells browsers and what it refuses (see the module).

    The service middleware (:mod:`servicekit.middleware`) asks :meth:`refusal`
    before the application sees a request, answers a refusal with
    :meth:`refuse`, and passes every response's headers through
    :meth:`response_headers`.
    """

    __slots__ = ("allowed_hosts", "trusted_proxies")

    def __init__(
        self, allowed_hosts: Sequence[str] | None = None, trusted_proxies: int = 1
    ) -> None:
        self.allowed_hosts = allowed_hosts
        self.trusted_proxies = trusted_proxies

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """The status and message refusing this request, or None when it may pass."""
        allowed = self.allowed_hosts
        unsafe = scope["method"] in _UNSAFE_METHODS
        if allowed is None and not unsafe:
            return None
        headers = dict(scope["headers"])
        raw_host = headers.get(b"host")
        host = _split_host(raw_host.decode("latin-1")) if raw_host is not None else None
        if (
            raw_host is not None
            and allowed is not None
            and scope["path"] not in HEALTH_PATHS
            and (host is None or not host_allowed(host[0], allowed))
        ):
            return 400, "host not allowed"
        if unsafe:
            source = _source_origin(headers)
            if source is not None and source != self._own_origin(scope, headers, host):
                return 403, "cross-site request refused"
        return None

    def _own_origin(
        self, scope: Scope, headers: dict[bytes, bytes], host: tuple[str, int | None] | None
    ) -> Origin | None:
        scheme = str(scope.get("scheme", "http"))
        forwarded = headers.get(b"x-forwarded-proto")
        if self.trusted_proxies > 0 and forwarded:
            scheme = forwarded.decode("latin-1").rpartition(",")[2].strip().lower()
        if host is None or scheme not in _DEFAULT_PORTS:
            return None
        return scheme, host[0], host[1] or _DEFAULT_PORTS[scheme]

    @staticmethod
    async def refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
        """Answer the refusal with the service's error body (or page)."""
        response = await http_error(Request(scope, receive), HTTPException(status, message))
        await response(scope, receive, send)

    @staticmethod
    def response_headers(
        scope: Scope, headers: Iterable[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        """A response's headers with the security headers added (a new list)."""
        headers = [*headers, *_ALWAYS]
        content_type = b""
        for name, value in headers:
            if name.lower() == b"content-type":
                content_type = value
                break
        if content_type.startswith(b"text/html"):
            docs = scope["path"].startswith("/docs")
            policy = _DOCS_POLICY_HEADER if docs else _POLICY_HEADER
            headers += [*_HTML, policy]
        return headers
