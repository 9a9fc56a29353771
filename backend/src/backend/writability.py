"""Readiness for writes: whether the database can take a write now, checked cheaply.

``/readyz`` pings the database with ``SELECT 1``, which still answers when
every write fails. Two causes of that are cheap to see without writing:

* SQLite: the file system holding the database is (nearly) full; every
  insert then fails with "database or disk is full". Checked with one
  ``statvfs`` call.
* PostgreSQL: the session is read-only (``transaction_read_only``), as on an
  Aurora reader or a writer being demoted during a failover. One ``SHOW``.

Other write failures (a lock held for longer than the busy timeout, a
constraint) are per request, not a state of the task, and stay out of
readiness: failing it would only move traffic without curing them.
"""

from __future__ import annotations

import os

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Below this much free space, SQLite's next checkpoint or page allocation may fail.
MIN_FREE_BYTES = 1024 * 1024


def _free_bytes(database: str) -> int:
    # One statvfs system call: no I/O to the disk itself, cheap on the event loop.
    stats = os.statvfs(os.path.dirname(os.path.abspath(database)))  # noqa: PTH100, PTH120
    return stats.f_bavail * stats.f_frsize


async def database_writable(engine: AsyncEngine) -> None:
    """Return when the database can take writes; raise, saying why, when it cannot."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            free = _free_bytes(url.database)
            if free < MIN_FREE_BYTES:
                msg = f"{free} bytes free on the database's file system"
                raise RuntimeError(msg)
        return
    async with engine.connect() as conn:
        if await conn.scalar(text("SHOW transaction_read_only")) == "on":
            msg = "the database session is read-only (a reader, or a failover in progress)"
            raise RuntimeError(msg)
