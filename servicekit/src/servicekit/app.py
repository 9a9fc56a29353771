"""The conventions every service application follows.

:func:`create_service_app` builds the FastAPI application with what both
services share: the health routes, the service middleware
(:mod:`servicekit.middleware`: tracing, the access log, browser security, the
error boundary and the body limit, in one layer), the error contract
(:mod:`servicekit.errors`), and a lifespan that
configures tracing inside the running loop and runs the service's own
start-up and shutdown. Each shutdown step runs whatever the one before it did:
a failure is one ``error`` line naming the step.

Building an application changes nothing outside it: what is tuned for the
whole process (the garbage collector, the task identity read from ECS) is
the business of the runner that serves it (:mod:`servicekit.runner`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect

from servicekit.browser import BrowserPolicy
from servicekit.docs import add_api_docs
from servicekit.errors import (
    HtmlErrors,
    client_disconnected,
    document_error_bodies,
    http_error,
    unchained,
    validation_error,
)
from servicekit.health import Lifecycle, health_router
from servicekit.identity import TaskIdentity, local_identity
from servicekit.logs import get_logger
from servicekit.metrics import Metrics
from servicekit.middleware import ServiceMiddleware
from servicekit.routes import include_routes
from servicekit.settings import ServiceSettings
from servicekit.tracing import configure_tracing, request_tracer, shutdown_tracing

ServiceLifespan = Callable[[FastAPI], AbstractAsyncContextManager[Mapping[str, Any] | None]]

log = get_logger("servicekit.app")

_NO_FASTAPI_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    lifespan: ServiceLifespan | None = None,
    routers: Sequence[APIRouter] = (),
    middleware: Sequence[Middleware] = (),
    html_errors: HtmlErrors | None = None,
    identity: TaskIdentity | None = None,
) -> FastAPI:
    """Build a FastAPI app with the shared health, logging, tracing and error handling.

    ``lifespan`` is the service's own start-up/shutdown (open and close its
    clients). ``routers`` are the service's routes, served from the app's own
    router (:func:`servicekit.routes.include_routes`): they are matched before
    the health and documentation routes, so a request to them is not first
    compared with those (routes added to the app later come after). ``middleware`` runs
    inside the service middleware, so what it answers is traced and
    access-logged too. ``html_errors`` renders the
    error page of a request that wants HTML (else errors are JSON). ``identity``
    is the task serving (the ``X-Served-By`` header, the footer); the runner
    reads it from ECS before serving, and without it the host's is used.
    Readiness checks are added with :func:`servicekit.health.add_readiness_check`.
    """
    lifecycle = Lifecycle()
    metrics = (
        Metrics(
            settings.service_name, settings.metrics_namespace, settings.metrics_interval_seconds
        )
        if settings.metrics_enabled
        else None
    )
    identity = identity or local_identity()

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        tracing = configure_tracing(settings)
        try:
            async with lifespan(app) if lifespan is not None else nullcontext():
                if metrics is not None:
                    metrics.start()
                log.info(
                    "started",
                    tracing=tracing,
                    environment=settings.environment,
                    task=identity.task,
                    zone=identity.zone,
                )
                yield
        finally:
            # After the drain and the in-flight requests: the last minute's
            # figures, then the last spans. Metrics.stop() never raises.
            if metrics is not None:
                await metrics.stop()
            try:
                shutdown_tracing()
            except Exception:
                log.exception("shutdown step failed", step="tracing")

    app = FastAPI(
        title=title,
        lifespan=app_lifespan,
        # The service middleware's trace (servicekit.tracing) is the one request
        # span, on X-Ray or OpenTelemetry, and the metrics are its EMF records:
        # FastAPI's own OpenTelemetry telemetry stays off, or it would add a second
        # server span and spans per dependency once a global provider is set, and
        # looks up the global providers on every request even without one.
        telemetry=_NO_FASTAPI_TELEMETRY,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    document_error_bodies(app)
    for router in (*routers, health_router()):
        include_routes(app, router)
    if settings.docs_enabled:
        add_api_docs(app, title)
    app.state.settings = settings
    app.state.lifecycle = lifecycle
    app.state.metrics = metrics
    app.state.identity = identity
    app.state.html_errors = html_errors
    app.add_exception_handler(RequestValidationError, unchained(validation_error))
    app.add_exception_handler(StarletteHTTPException, unchained(http_error))
    app.add_exception_handler(ClientDisconnect, client_disconnected)
    # add_middleware wraps the app: the last one added runs first.
    for item in reversed(middleware):
        app.add_middleware(item.cls, *item.args, **item.kwargs)
    app.add_middleware(
        ServiceMiddleware,
        lifecycle=lifecycle,
        browser=BrowserPolicy(settings.hosts_allowed, settings.trusted_proxies),
        max_body_bytes=settings.max_request_body_bytes,
        tracer=request_tracer(settings) if settings.tracing_enabled else None,
        metrics=metrics,
        trusted_proxies=settings.trusted_proxies,
        identity=identity,
    )
    return app
