"""What a browser is told and what it may send: security headers and same-origin writes.

:class:`BrowserSecurityMiddleware`, a pure ASGI middleware in both services:

* every response says ``X-Content-Type-Options: nosniff``; every HTML page
  also carries :data:`CONTENT_SECURITY_POLICY` (scripts and styles from the
  site's own files only, no inline code, no framing), ``X-Frame-Options:
  DENY`` for browsers older than ``frame-ancestors``, and
  ``Referrer-Policy: same-origin``;
* a write (``POST``, ``PUT``, ``PATCH``, ``DELETE``) whose ``Origin`` (or,
  without one, ``Referer``) names another site is refused with 403 before
  the application sees it: a page elsewhere cannot make a visitor's browser
  add items or mark notifications read. Browsers send ``Origin`` with every
  cross-site write; a request with neither header (an API client, a script,
  the frontend calling the backend) is not a browser's cross-site request and
  passes.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.errors import http_error

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


def _source_host(headers: dict[bytes, bytes]) -> str | None:
    """The ``host[:port]`` a write came from per ``Origin``/``Referer``; None when neither says."""
    source = headers.get(b"origin") or headers.get(b"referer")
    if source is None:
        return None
    text = source.decode("latin-1").strip()
    if text == "null":
        return ""  # an opaque origin (sandboxed frame, data: URL) is never this site
    return urlsplit(text).netloc.lower()


class BrowserSecurityMiddleware:
    """Adds the security headers and refuses cross-site writes (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] in _UNSAFE_METHODS:
            headers = dict(scope["headers"])
            source = _source_host(headers)
            host = headers.get(b"host", b"").decode("latin-1").lower()
            if source is not None and source != host:
                request = Request(scope, receive)
                refusal = HTTPException(403, "cross-site request refused")
                response = await http_error(request, refusal)
                await response(scope, receive, self._with_headers(scope, send))
                return
        await self.app(scope, receive, self._with_headers(scope, send))

    @staticmethod
    def _with_headers(scope: Scope, send: Send) -> Send:
        docs = scope["path"].startswith("/docs")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), *_ALWAYS]
                content_type = next(
                    (value for name, value in headers if name.lower() == b"content-type"), b""
                )
                if content_type.startswith(b"text/html"):
                    policy = DOCS_CONTENT_SECURITY_POLICY if docs else CONTENT_SECURITY_POLICY
                    headers += [*_HTML, (b"content-security-policy", policy.encode())]
                message["headers"] = headers
            await send(message)

        return send_with_headers
