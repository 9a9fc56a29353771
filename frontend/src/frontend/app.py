"""The frontend application: pages, the backend client's lifecycle, error pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from frontend import api, pages
from frontend.backend_client import (
    BackendClient,
    BackendRejected,
    BackendUnavailable,
    create_session,
)
from frontend.settings import FrontendSettings
from servicekit.app import create_service_app
from servicekit.errors import error_body
from servicekit.health import HEALTH_PATHS
from servicekit.identity import TaskIdentity
from servicekit.logs import get_logger

log = get_logger("frontend.app")

STATIC_DIR = Path(__file__).with_name("static")

_UNAVAILABLE_TITLES = {
    502: "The backend failed to answer properly",
    503: "The backend is unavailable",
    504: "The backend did not answer in time",
}
_ERROR_TITLES = {
    404: "Not found",
    405: "Not allowed",
    408: "Request timed out",
    413: "Request too large",
    422: "The request was refused",
    500: "Something went wrong",
}
# The statuses a second try of the same GET can cure: a timeout, a failure on the way.
_RETRYABLE = frozenset({408, 500, 502, 503, 504})
# Served as JSON whoever asks: the API, health checks and the API docs.
_JSON_PATHS = (*HEALTH_PATHS, "/openapi.json")


def create_app(settings: FrontendSettings, identity: TaskIdentity | None = None) -> FastAPI:
    """Build the frontend; the lifespan opens the backend client and closes it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        session = create_session(settings)
        app.state.backend = BackendClient(session, settings, app.state.metrics)
        try:
            yield
        finally:
            await session.close()
            log.info("backend client closed")

    app = create_service_app(
        settings,
        title="sbcntr frontend",
        lifespan=lifespan,
        routers=(pages.router, api.router),
        html_errors=_html_error,
        identity=identity,
    )
    # Styles, scripts and icons are files (no inline <style> or <script>: the CSP).
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_api_route("/favicon.ico", _favicon, include_in_schema=False)
    app.add_exception_handler(BackendUnavailable, _backend_unavailable)
    app.add_exception_handler(BackendRejected, _backend_rejected)
    return app


def _wants_json(request: Request) -> bool:
    """Whether an error is answered as JSON: ``/api``, health and docs; pages get HTML."""
    path = request.url.path
    return path.startswith((api.router.prefix + "/", "/docs")) or path in _JSON_PATHS


def _html_error(request: Request, status: int, message: str) -> Response | None:
    """The site's error page for an error outside ``/api`` (``None``: answer JSON)."""
    if _wants_json(request):
        return None
    if status == 404:  # the router's "Not Found" would repeat the title
        message = "There is no page at this address."
    return _error_page(request, status, _ERROR_TITLES.get(status, "Error"), message)


async def _favicon() -> FileResponse:
    return FileResponse(STATIC_DIR / "favicon.ico", media_type="image/vnd.microsoft.icon")


def _section(path: str) -> str:
    """The page a form on ``path`` belongs to: where to go back after a failed write."""
    return "/notifications" if path.startswith("/notifications") else "/items"


async def _backend_unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BackendUnavailable)
    if _wants_json(request):
        body = error_body("backend_unavailable", _UNAVAILABLE_TITLES.get(exc.status, "failed"))
        return JSONResponse(body, status_code=exc.status)
    if request.method != "GET":
        return pages.write_failed(request, exc, back_url=_section(request.url.path))
    return _error_page(
        request,
        exc.status,
        _UNAVAILABLE_TITLES.get(exc.status, "The backend failed"),
        "The page could not be loaded. It will work again once the backend recovers.",
    )


async def _backend_rejected(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BackendRejected)
    if _wants_json(request):
        return JSONResponse(dict(exc.body), status_code=exc.status)
    title = "Not found" if exc.status == 404 else "The request was refused"
    return _error_page(request, exc.status, title, str(exc))


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    retry_url = back_url = None
    if request.method != "GET":
        back_url = _section(request.url.path)
    elif status in _RETRYABLE:
        query = f"?{request.url.query}" if request.url.query else ""
        retry_url = request.url.path + query
    return pages.render(
        request,
        "error.html",
        status_code=status,
        status=status,
        title=title,
        message=message,
        retry_url=retry_url,
        back_url=back_url,
        unread=None,
    )
