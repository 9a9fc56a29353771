"""The frontend's client for the backend API.

One aiohttp session per process (a connection pool), made by
:func:`create_session`, the only place its pool is chosen, and used by
:class:`BackendClient`, which knows the API's routes, sets each call's
timeouts and turns every failure into a :class:`BackendUnavailable` that says
what the page should answer:

* the backend refused the connection or answered 503 -> 503;
* no answer within the time budget -> 504;
* any other 5xx or a response that is not the API's JSON -> 502.

Idempotent GETs are retried a bounded number of times with jittered
exponential backoff, within the same time budget; writes are never retried.
Each call, retries included, is one ``BackendCalls`` datum of the service's
metrics (an error when the page answers 502/503/504), per operation
(``PUT /v1/items/{id}/favorite``), and each attempt is traced
(:func:`servicekit.tracing.trace_call`).

Each answer's ``X-Served-By`` header (which backend task answered, see
:mod:`servicekit.identity`) is collected for the page being served, once
:func:`track_backend_tasks` has been called in its request.

Calls go to aiohttp's session directly: an HTTP client's request and response
objects on top of it (httpx's, through an aiohttp transport) cost about 50 µs
of CPU per call, a third of the call, for nothing a call here uses
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, NamedTuple

import aiohttp
import orjson
from yarl import URL

from frontend.settings import FrontendSettings
from servicekit.identity import SERVED_BY_HEADER, TaskIdentity
from servicekit.logs import get_logger, request_id_var
from servicekit.metrics import Metrics
from servicekit.tracing import trace_call

log = get_logger("frontend.backend_client")

_RETRY_STATUSES = frozenset({502, 503, 504})
_USER_AGENT = "sbcntr-frontend"
_ID_SEGMENT = re.compile(r"/\d+(?=/|$)")

# The backend tasks that answered the current request's calls. A list, set
# once per request: the tasks of concurrent calls (asyncio.gather) get copies
# of the context, and so share this one list.
_backend_tasks: ContextVar[list[TaskIdentity] | None] = ContextVar("backend_tasks", default=None)


def track_backend_tasks() -> None:
    """Start collecting which backend tasks answer the current request's calls."""
    _backend_tasks.set([])


def backend_tasks() -> list[TaskIdentity]:
    """The backend tasks that answered the current request's calls so far, in order."""
    return list(_backend_tasks.get() or ())


def _note_backend_task(value: str | None) -> None:
    seen = _backend_tasks.get()
    if seen is None or value is None:
        return
    identity = TaskIdentity.from_header(value)
    if identity is not None and identity not in seen:
        seen.append(identity)


class BackendUnavailable(Exception):  # noqa: N818 - names the condition, as pages see it
    """The backend could not serve a call; ``status`` is what the page answers."""

    def __init__(self, status: int, cause: str) -> None:
        super().__init__(cause)
        self.status = status
        self.cause = cause


class BackendRejected(Exception):  # noqa: N818
    """The backend answered 4xx: the request itself was wrong (bad input, unknown id)."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(body.get("message", f"backend answered {status}"))
        self.status = status
        self.body = body


class BackendAnswer(NamedTuple):
    """A successful answer of the backend: its status, its body as sent, and parsed."""

    status: int
    raw: bytes  # a JSON object, as the backend sent it (what ``/api`` relays)
    body: dict[str, Any]


def create_session(settings: FrontendSettings) -> aiohttp.ClientSession:
    """The process's connection pool to the backend; make it in the running loop."""
    connector = aiohttp.TCPConnector(
        limit=settings.backend_max_connections,
        keepalive_timeout=settings.backend_keepalive_seconds,
    )
    # No cookies (the backend sets none; a jar would keep one user's for all),
    # no proxy or netrc from the environment, no decompression (JSON is small).
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding",),
    )


def _classify(exc: Exception) -> tuple[int, str]:
    """The status a page answers for a failed attempt, and a short cause.

    A refused connection is 503, a timeout 504, and a connection reset or
    closed without an answer (a reused connection the backend had closed) 502.
    """
    if isinstance(exc, aiohttp.ClientConnectorError):
        return 503, f"backend unreachable: {exc}"
    if isinstance(exc, TimeoutError):  # aiohttp's connect and read timeouts too
        return 504, "backend timed out"
    return 502, f"backend connection failed: {type(exc).__name__}: {exc}"


def _drop_tracebacks(exc: BaseException) -> None:
    """Forget the tracebacks of ``exc`` and the exceptions it was raised from.

    A failed attempt is recorded (its trace, the cause in the log) and then
    only its status and cause are kept. aiohttp raises a failed connection's
    error from a local of the frame that raises it (``last_exc`` in its
    connector), and the error's traceback holds that frame: a reference
    cycle of the attempt's objects (its request, socket and frames), freed
    only when the garbage collector runs, rarely in the services, while a
    backend outage makes one on every call.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        error.__traceback__ = None
        pending += (error.__cause__, error.__context__)


def favorite_query(favorite: bool | None) -> dict[str, str]:
    """The query of ``/v1/items`` that filters on the favourite flag, if given."""
    return {} if favorite is None else {"favorite": str(favorite).lower()}


class BackendClient:
    """The backend API, as the pages (parsed answers) and ``/api`` (relayed answers) use it."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: FrontendSettings,
        metrics: Metrics | None = None,
    ) -> None:
        self._session = session
        self._metrics = metrics
        self._operations: dict[tuple[str, str], str] = {}
        self._base_url = URL(str(settings.backend_url))
        self._urls: dict[str, URL] = {}
        # Connect within the connect timeout. The whole call, retries included,
        # is bounded by its budget (``exchange``): a read timeout equal to it
        # could never fire first, and would re-arm a timer on every read.
        self._timeout = aiohttp.ClientTimeout(sock_connect=settings.backend_connect_timeout_seconds)
        self._budget = settings.backend_timeout_seconds
        self._retries = settings.backend_get_retries
        self._backoff = settings.backend_retry_backoff_seconds

    async def hello(self) -> str:
        body = await self._call("GET", "/v1/helloworld")
        return str(body["data"])

    async def items(
        self, favorite: bool | None = None, *, limit: int = 100, offset: int = 0
    ) -> dict[str, Any]:
        """One page of items: ``{"data", "total", "limit", "offset"}``."""
        params = {**favorite_query(favorite), "limit": str(limit), "offset": str(offset)}
        return await self._call("GET", "/v1/items", params=params)

    async def create_item(self, title: str, name: str, content: str) -> dict[str, Any]:
        body = {"title": title, "name": name, "content": content}
        return await self._call("POST", "/v1/items", json=body)

    async def set_favorite(self, item_id: int, favorite: bool) -> dict[str, Any]:
        return await self._call("PUT", f"/v1/items/{item_id}/favorite", json={"favorite": favorite})

    async def notifications(
        self, unread: bool | None = None, *, limit: int = 100, offset: int = 0
    ) -> dict[str, Any]:
        """One page of notifications (all, or unread or read ones): ``{"data", "total", ...}``."""
        params = {"limit": str(limit), "offset": str(offset)}
        if unread is not None:
            params["unread"] = str(unread).lower()
        return await self._call("GET", "/v1/notifications", params=params)

    async def unread_count(self) -> int:
        body = await self._call("GET", "/v1/notifications/count")
        return int(body["unread"])

    async def mark_read(self, notification_id: int) -> dict[str, Any]:
        return await self._call("PUT", f"/v1/notifications/{notification_id}/read")

    async def mark_all_read(self) -> int:
        body = await self._call("PUT", "/v1/notifications/read")
        return int(body["updated"])

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> dict[str, Any]:
        """One API call; its JSON object body."""
        return (await self.exchange(method, path, params=params, json=json)).body

    async def exchange(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
    ) -> BackendAnswer:
        """One API call within the time budget; GETs retried, others tried once.

        The request body is ``json`` (serialized here) or ``content``, JSON
        bytes passed on as they are (what ``/api`` received). The answer's
        body is checked to be a JSON object; ``/api`` passes ``raw`` on
        unchanged rather than serializing the parsed body again.
        """
        attempts = 1 + (self._retries if method == "GET" else 0)
        headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
        body = orjson.dumps(json) if json is not None else content
        if body is not None:
            headers["Content-Type"] = "application/json"
        request_id = request_id_var.get()
        if request_id is not None:
            headers["X-Request-Id"] = request_id
        begun = time.perf_counter()
        try:
            async with asyncio.timeout(self._budget):
                answer = await self._attempts(method, path, attempts, params, body, headers)
        except TimeoutError:
            failure = BackendUnavailable(504, f"backend did not answer within {self._budget:g}s")
        except BackendUnavailable as exc:
            failure = exc
        except BackendRejected:
            self._record(method, path, begun, ok=True)  # the backend answered: a 4xx is no fault
            raise
        else:
            self._record(method, path, begun, ok=True)
            return answer
        self._record(method, path, begun, ok=False)
        log.warning(
            "backend call failed",
            backend_method=method,
            backend_path=path,
            answer_status=failure.status,
            cause=failure.cause,
        )
        try:
            raise failure
        finally:
            # The failure's traceback holds this frame: a reference to it
            # here would make the two a reference cycle.
            del failure

    def _record(self, method: str, path: str, begun: float, *, ok: bool) -> None:
        if self._metrics is None:
            return
        operation = self._operations.get((method, path))
        if operation is None:
            # Ids become a placeholder, so an operation names a route, not a row.
            operation = f"{method} {_ID_SEGMENT.sub('/{id}', path)}"
            if len(self._operations) < 1024:
                self._operations[(method, path)] = operation
        self._metrics.record_call(operation, ok, (time.perf_counter() - begun) * 1000)

    async def _attempts(
        self,
        method: str,
        path: str,
        attempts: int,
        params: Mapping[str, str] | None,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> BackendAnswer:
        url = self._url(path)
        if params:
            url = url.with_query(params)
        for attempt in range(attempts):
            if attempt:
                # Full jitter: spread the retries of many pages over the window.
                await asyncio.sleep(random.uniform(0, self._backoff * 2**attempt))  # noqa: S311
            try:
                status, raw, served_by = await self._send(method, url, body, dict(headers))
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, cause = _classify(exc)
                failure = BackendUnavailable(status, cause)
                _drop_tracebacks(exc)
                continue
            _note_backend_task(served_by)
            if status in _RETRY_STATUSES:
                failure = BackendUnavailable(
                    503 if status == 503 else 502, f"backend answered {status}"
                )
                continue
            return self._decode(status, raw)
        try:
            raise failure
        finally:
            del failure  # as in call(): no cycle through this frame

    async def _send(
        self, method: str, url: URL, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes, str | None]:
        """One traced exchange: (status, body, ``X-Served-By``), the connection released."""
        host = url.raw_host or ""
        call = trace_call(method, url.scheme, host, url.explicit_port, url.raw_path, headers)
        try:
            async with self._session.request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                compress=False,
            ) as response:
                raw = await response.read()
                if call is not None:
                    call.answered(response.status)
                return response.status, raw, response.headers.get(SERVED_BY_HEADER)
        except Exception as exc:
            if call is not None:
                call.failed(exc)
            raise
        finally:
            if call is not None:
                call.end()

    def _url(self, path: str) -> URL:
        """The absolute URL of ``path``, parsed once per path (parsing costs per call)."""
        url = self._urls.get(path)
        if url is None:
            url = self._base_url.join(URL(path))
            if len(self._urls) < 1024:  # paths with ids are many; keep the cache bounded
                self._urls[path] = url
        return url

    @staticmethod
    def _decode(status: int, raw: bytes) -> BackendAnswer:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise BackendUnavailable(502, f"backend answered {status} without a JSON object")
        if status >= 500:
            raise BackendUnavailable(502, f"backend answered {status}")
        if status >= 400:
            raise BackendRejected(status, body)
        return BackendAnswer(status, raw, body)
