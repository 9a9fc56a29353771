"""Readiness of the schema: the database must be at this code's migration revision.

The service never changes the schema itself (``python -m backend migrate``
does, once per release). It only refuses to become ready while the database
is behind the revision its models need, so a load balancer sends it nothing
it would answer with a 500.

A revision the code does not know is taken as newer: a later release has
already migrated the database, and since migrations are written expand-first
(docs/migrations.md), the running code keeps working on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.migrations import HEAD, REVISIONS
from servicekit.logs import get_logger

log = get_logger("backend.revision_check")

VERSION_TABLE = "alembic_version"
CACHE_SECONDS = 30.0
"""How long a passing check is reused: the readiness probe runs every few seconds."""


class SchemaNotReadyError(Exception):
    """The database's schema is not the one this code needs; the message says what to do."""


def read_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    revisions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()  # noqa: S608 - constant
    return revisions[0] if len(revisions) == 1 else ",".join(sorted(revisions)) or None


async def database_revision(engine: AsyncEngine) -> str | None:
    """The database's migration revision; ``None`` when it was never migrated."""
    async with engine.connect() as conn:
        return await conn.run_sync(read_revision)


@dataclass
class RevisionCheck:
    """The readiness check ``schema``: passes when the database is at :data:`HEAD` or newer.

    A pass is cached for :data:`CACHE_SECONDS`; a failure is checked again on
    every probe, so the service becomes ready as soon as the migration ends.
    """

    expected: str = HEAD
    known: tuple[str, ...] = REVISIONS
    passed_until: float = 0.0
    warned_newer: str | None = None

    async def __call__(self, engine: AsyncEngine) -> None:
        if time.monotonic() < self.passed_until:
            return
        self.verify(await database_revision(engine))
        self.passed_until = time.monotonic() + CACHE_SECONDS

    def verify(self, revision: str | None) -> None:
        """Return when ``revision`` can be served; raise :class:`SchemaNotReadyError` saying why."""
        run = "run `python -m backend migrate`"
        if revision is None:
            msg = f"database not migrated (no {VERSION_TABLE} table): {run}"
            raise SchemaNotReadyError(msg)
        if revision == self.expected:
            return
        if revision in self.known:
            msg = f"database at revision {revision}, this code needs {self.expected}: {run}"
            raise SchemaNotReadyError(msg)
        if self.warned_newer != revision:
            self.warned_newer = revision
            log.warning(
                "database revision newer than this code",
                database_revision=revision,
                code_revision=self.expected,
            )
