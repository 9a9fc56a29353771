"""The backend application: API routes, database lifecycle and readiness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from starlette.middleware import Middleware

from backend import api
from backend.connect import ConnectOptions
from backend.database import create_engine, ping
from backend.faults import FaultInjectionMiddleware, Faults, faults_router, readiness_fault
from backend.revision_check import RevisionCheck, SchemaNotReadyError, database_revision
from backend.roles import RoleCheck, SchemaRightsError
from backend.settings import BackendSettings
from backend.writability import database_writable
from servicekit.app import create_service_app
from servicekit.health import add_readiness_check
from servicekit.identity import TaskIdentity
from servicekit.logs import get_logger
from servicekit.routes import include_routes
from servicekit.tracing import instrument_sqlalchemy

log = get_logger("backend.app")


def create_app(
    settings: BackendSettings,
    identity: TaskIdentity | None = None,
    *,
    connect_options: ConnectOptions | None = None,
) -> FastAPI:
    """Build the backend; the lifespan opens the database engine and disposes of it.

    The schema is the migrations' business: readiness fails (check ``schema``)
    while the database is behind this code's revision. Outside development,
    on PostgreSQL, the service refuses to start when its database user can
    change the schema, and readiness (check ``database_role``) fails while it
    could. ``connect_options`` replaces the TLS context and credentials the
    settings choose (:meth:`BackendSettings.connect_options`).
    """
    url = settings.database_url_object()
    revision_check = RevisionCheck()
    role_check = (
        RoleCheck() if settings.database_is_postgresql and not settings.is_development else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        options = connect_options or settings.connect_options()
        engine = create_engine(url, settings.database_pool_size, options=options)
        instrument_sqlalchemy(engine)
        app.state.engine = engine
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        try:
            if role_check is not None:
                await _refuse_schema_rights(engine, role_check)
            await _log_revision(engine, revision_check)
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
        settings,
        title="sbcntr backend",
        lifespan=lifespan,
        routers=(api.router,),
        middleware=middleware,
        identity=identity,
    )

    async def database_ready() -> None:
        await ping(app.state.engine)

    async def schema_ready() -> None:
        await revision_check(app.state.engine)

    add_readiness_check(app, "database", database_ready)
    add_readiness_check(app, "database_writes", lambda: database_writable(app.state.engine))
    add_readiness_check(app, "schema", schema_ready)
    if role_check is not None:

        async def role_ready() -> None:
            await role_check(app.state.engine)

        add_readiness_check(app, "database_role", role_ready)
    if settings.fault_injection_enabled:
        include_routes(app, faults_router(faults))
        add_readiness_check(app, "fault_injection", partial(readiness_fault, faults))
        log.warning("fault injection enabled", **vars(faults))
    return app


async def _log_revision(engine: AsyncEngine, revision_check: RevisionCheck) -> None:
    """One start-up line with the database's revision, or why it cannot serve yet."""
    database = engine.url.render_as_string(hide_password=True)
    try:
        revision = await database_revision(engine)
        revision_check.verify(revision)
    except SchemaNotReadyError as exc:
        log.warning("database not ready", database=database, reason=str(exc))
    except Exception as exc:  # the readiness check reports it from now on
        log.warning("database unreachable", database=database, error=str(exc)[:300])
    else:
        log.info("database ready", database=database, revision=revision)


async def _refuse_schema_rights(engine: AsyncEngine, role_check: RoleCheck) -> None:
    """Raise :class:`SchemaRightsError` (after one ``critical`` line) when the user can run DDL.

    An unreachable database is left to readiness, which runs the same check.
    """
    try:
        await role_check(engine)
    except SchemaRightsError as exc:
        log.critical("database user can change the schema", reason=str(exc))
        raise
    except Exception as exc:  # readiness (check database_role) runs it again
        log.warning("database role not checked", error=str(exc)[:300])
