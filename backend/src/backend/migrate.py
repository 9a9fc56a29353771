"""``python -m backend migrate``: bring the database to this code's schema, once, under a lock.

Runs before the service starts, once per release: ``dev.py up`` locally, the
one-shot ``migrate`` service in compose, a one-off ECS task
(``sbcntrctl deploy migrate backend``) on AWS. It reads the service's own
settings (``DATABASE_URL``, ``DATABASE_PASSWORD`` or ``DATABASE_AUTH``,
``DATABASE_SSL_ROOT_CERT``) and connects as the schema's owner: on ECS the
user and password of the secret ``DATABASE_OWNER_CREDENTIALS_ARN``, read
with the migration task's own role (no service task can read it). On
PostgreSQL it then grants the service's role DML on the tables
(:func:`backend.roles.grant_app_role`, in the same transaction).

Every run holds one exclusive lock for its whole transaction, so runners
started together apply each migration exactly once and the later ones find
nothing to do:

- PostgreSQL: ``pg_advisory_xact_lock`` on :data:`LOCK_KEY`, taken in the
  transaction that then runs the migrations (PostgreSQL's DDL is
  transactional) and released by its commit or rollback, also when the
  runner dies.
- SQLite: ``BEGIN EXCLUSIVE``, the database file's own write lock, waited
  for up to :data:`SQLITE_LOCK_WAIT_SECONDS` (a runner queues behind another
  runner's whole migration, not behind one request's write).

Commands (exit 0 on success, 1 when the migration failed, 2 on bad
configuration or arguments):

    python -m backend migrate [--seed]     upgrade to this code's head revision
    python -m backend downgrade REVISION   go back to REVISION (a rollback)
    python -m backend revision -m MESSAGE --id NNNN
                                           write a migration from the models' diff

``--seed`` writes the demo data (:mod:`backend.seed`) in the same locked
transaction, and is refused unless ``ENVIRONMENT`` is development or test.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from backend import seed as seed_data
from backend.connect import ConnectOptions
from backend.database import create_engine
from backend.migrations import REVISIONS
from backend.revision_check import read_revision
from backend.roles import grant_app_role
from backend.settings import BackendSettings
from servicekit.logs import configure_logging, get_logger
from servicekit.runner import load_settings_or_report

log = get_logger("backend.migrate")

LOCK_KEY = 0x5BC7_0001
"""The PostgreSQL advisory lock every migration runner of this database takes."""

SQLITE_LOCK_WAIT_SECONDS = 300.0
"""How long a runner on SQLite waits for the file's write lock before it fails."""

SCRIPT_LOCATION = "backend:migrations"
BASELINE = REVISIONS[0]
"""The schema the service created itself before it had migrations."""
BASELINE_TABLES = ("items", "notifications")


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the packaged migrations, on ``connection``."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


def _has_tables_of_baseline(conn: Connection) -> bool:
    return all(inspect(conn).has_table(name) for name in BASELINE_TABLES)


def _begin_exclusive(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN EXCLUSIVE")


def _driver_autocommit(dbapi_connection: Any, _: Any) -> None:
    # SQLite's Python driver begins transactions itself, and not before DDL;
    # hand BEGIN to SQLAlchemy ("begin" event) so the whole run is one
    # exclusive transaction.
    dbapi_connection.isolation_level = None


@asynccontextmanager
async def locked_transaction(
    url: URL, options: ConnectOptions | None = None
) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that holds the migration lock; committed on success."""
    engine = create_engine(
        url, pool_size=1, options=options, sqlite_busy_timeout=SQLITE_LOCK_WAIT_SECONDS
    )
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _driver_autocommit)
        event.listen(engine.sync_engine, "begin", _begin_exclusive)
    try:
        async with engine.begin() as conn:
            if url.get_backend_name() == "postgresql":
                locked = await conn.scalar(
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": LOCK_KEY}
                )
                if not locked:
                    log.info("waiting for the migration lock", lock_key=LOCK_KEY)
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY}
                    )
            yield conn
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Outcome:
    before: str | None
    after: str | None
    seeded: bool = False


async def upgrade(
    url: URL,
    revision: str = "head",
    *,
    seed: bool = False,
    options: ConnectOptions | None = None,
) -> Outcome:
    """Upgrade to ``revision`` (and seed when asked) in one locked transaction.

    On PostgreSQL the service's role is (re)granted DML on every table in the
    same transaction.
    """
    async with locked_transaction(url, options) as conn:
        before = await conn.run_sync(read_revision)
        if before is None and await conn.run_sync(_has_tables_of_baseline):
            # Made by the service's own create_all before migrations existed:
            # that schema is revision 0001 exactly, so record it as such.
            await conn.run_sync(lambda sync: command.stamp(alembic_config(sync), BASELINE))
            log.info("database created before migrations adopted", revision=BASELINE)
        await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))
        if url.get_backend_name() == "postgresql":
            await conn.run_sync(grant_app_role)
        seeded = await seed_data.seed(conn) if seed else False
        after = await conn.run_sync(read_revision)
    return Outcome(before, after, seeded)


async def downgrade(url: URL, revision: str, options: ConnectOptions | None = None) -> Outcome:
    """Downgrade to ``revision`` in one locked transaction."""
    async with locked_transaction(url, options) as conn:
        before = await conn.run_sync(read_revision)
        await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), revision))
        after = await conn.run_sync(read_revision)
    return Outcome(before, after)


async def write_revision(
    url: URL, message: str, revision_id: str, options: ConnectOptions | None = None
) -> None:
    """Write migration ``revision_id`` from the difference between the models and ``url``."""
    async with locked_transaction(url, options) as conn:
        await conn.run_sync(
            lambda sync: command.revision(
                alembic_config(sync), message, autogenerate=True, rev_id=revision_id
            )
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backend", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("migrate", help="upgrade the database to this code's head revision")
    up.add_argument(
        "--seed", action="store_true", help="also write the demo data (development and test only)"
    )
    down = commands.add_parser("downgrade", help="go back to an earlier revision")
    down.add_argument("revision", help="the revision to go back to (`base`: empty database)")
    new = commands.add_parser("revision", help="write a migration from the models' diff")
    new.add_argument("-m", "--message", required=True)
    new.add_argument("--id", required=True, help="the next number: 0003 after 0002")
    return parser


def main(argv: Sequence[str]) -> int:
    """Run one command of ``python -m backend``; return the exit status."""
    args = _parser().parse_args(argv)
    settings = load_settings_or_report(BackendSettings)
    if settings is None:
        return 2
    configure_logging(settings.service_name, settings.log_level)
    if getattr(args, "seed", False) and not settings.is_development:
        log.critical(
            "seed data refused",
            environment=settings.environment,
            reason="seed data is for development and test only",
        )
        return 2
    try:
        url, options = settings.migration_connection()
    except Exception as exc:
        log.critical("migration credentials not read", error=str(exc)[:300])
        return 2
    database = url.render_as_string(hide_password=True)
    try:
        if args.command == "migrate":
            outcome = asyncio.run(upgrade(url, seed=args.seed, options=options))
        elif args.command == "downgrade":
            outcome = asyncio.run(downgrade(url, args.revision, options))
        else:
            asyncio.run(write_revision(url, args.message, args.id, options))
            return 0
    except Exception as exc:
        log.exception("migration failed", command=args.command, database=database, error=str(exc))
        return 1
    log.info(
        "database migrated" if outcome.before != outcome.after else "database already at revision",
        command=args.command,
        database=database,
        from_revision=outcome.before,
        to_revision=outcome.after,
        seeded=outcome.seeded,
    )
    return 0
