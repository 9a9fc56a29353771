"""Engine, sessions, schema creation and seed data.

One ``AsyncEngine`` per process, made at start-up and disposed at shutdown;
each request gets its own ``AsyncSession`` through :data:`SessionDep`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from backend.models import Base, Item, Notification

SQLITE_BUSY_TIMEOUT_SECONDS = 15

SEED_ITEMS = [
    {"title": "Fargate", "name": "sbcntr", "content": "Serverless compute for containers."},
    {"title": "FireLens", "name": "sbcntr", "content": "Routes container logs with Fluent Bit."},
    {"title": "X-Ray", "name": "sbcntr", "content": "Traces requests across services."},
]
SEED_NOTIFICATIONS = [
    {"title": "Welcome", "description": "The backend is up and seeded.", "category": "information"},
    {
        "title": "Maintenance",
        "description": "Tasks may be replaced at any time.",
        "category": "alert",
    },
]


def create_engine(url: URL, pool_size: int) -> AsyncEngine:
    """An engine for ``url``; for SQLite, WAL mode and a busy timeout for concurrent writers."""
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}, pool_size=pool_size
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=pool_size, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


async def create_schema(engine: AsyncEngine) -> None:
    """Create missing tables, then seed them if the database is new."""
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        if await session.scalar(select(func.count()).select_from(Item)) == 0:
            session.add_all(Item(**values) for values in SEED_ITEMS)
        if await session.scalar(select(func.count()).select_from(Notification)) == 0:
            session.add_all(Notification(**values) for values in SEED_NOTIFICATIONS)


async def ping(engine: AsyncEngine) -> None:
    """Return when the database answers a trivial query; raise otherwise."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
