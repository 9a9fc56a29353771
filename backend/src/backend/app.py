"""The backend application: API routes, database lifecycle and readiness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker
from starlette.middleware import Middleware

from backend import api
from backend.database import create_engine, create_schema, ping
from backend.faults import FaultInjectionMiddleware, Faults, faults_router, readiness_fault
from backend.settings import BackendSettings
from backend.writability import database_writable
from servicekit.app import create_service_app
from servicekit.health import add_readiness_check
from servicekit.logs import get_logger
from servicekit.tracing import instrument_sqlalchemy

log = get_logger("backend.app")


def create_app(settings: BackendSettings) -> FastAPI:
    """Build the backend; the lifespan opens the database engine and disposes of it."""
    url = settings.database_url_object()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(url, settings.database_pool_size)
        instrument_sqlalchemy(engine)
        app.state.engine = engine
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        try:
            await create_schema(engine)
            log.info("database ready", database=url.render_as_string(hide_password=True))
            yield
        finally:
            await engine.dispose()
            log.info("database closed")

    faults = Faults(
        latency_ms=settings.fault_latency_ms,
        error_rate=settings.fault_error_rate,
        readiness_fail=settings.fault_readiness_fail,
    )
    middleware = []
    if settings.fault_injection_enabled:
        middleware.append(Middleware(FaultInjectionMiddleware, faults=faults))

    app = create_service_app(
        settings, title="sbcntr backend", lifespan=lifespan, middleware=middleware
    )
    app.include_router(api.router)

    async def database_ready() -> None:
        await ping(app.state.engine)

    add_readiness_check(app, "database", database_ready)
    add_readiness_check(app, "database_writes", lambda: database_writable(app.state.engine))
    if settings.fault_injection_enabled:
        app.include_router(faults_router(faults))
        add_readiness_check(app, "fault_injection", partial(readiness_fault, faults))
        log.warning("fault injection enabled", **vars(faults))
    return app
