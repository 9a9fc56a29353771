"""Engine and sessions.

One ``AsyncEngine`` per process, made at start-up and disposed at shutdown;
each request gets its own ``AsyncSession`` through :data:`SessionDep`. The
schema is not created here: ``python -m backend migrate`` (:mod:`backend.migrate`)
makes and changes it, once per release.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from backend.connect import ConnectOptions

SQLITE_BUSY_TIMEOUT_SECONDS = 15


def create_engine(
    url: URL,
    pool_size: int,
    *,
    options: ConnectOptions | None = None,
    sqlite_busy_timeout: float = SQLITE_BUSY_TIMEOUT_SECONDS,
) -> AsyncEngine:
    """An engine for ``url``; for SQLite, WAL mode and a busy timeout for concurrent writers.

    ``options`` (PostgreSQL) give each new connection its TLS context and its
    password (an IAM token); the pool then recycles connections before a
    token expires. ``sqlite_busy_timeout`` is how long a SQLite statement
    waits for another connection's lock before failing with "database is locked".
    """
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, connect_args={"timeout": sqlite_busy_timeout}, pool_size=pool_size
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    options = options or ConnectOptions()
    engine = create_async_engine(
        url, pool_size=pool_size, pool_pre_ping=True, pool_recycle=options.pool_recycle
    )
    options.install(engine.sync_engine)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


async def ping(engine: AsyncEngine) -> None:
    """Return when the database answers a trivial query; raise otherwise."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
