"""Migrations on SQLite and a real PostgreSQL server: they match the models, run
once, keep data, go back down, and the service waits for them before it is ready."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from backend import migrate, revision_check
from backend.app import create_app
from backend.database import SQLITE_BUSY_TIMEOUT_SECONDS, create_engine
from backend.migrate import LOCK_KEY, alembic_config, downgrade, upgrade
from backend.migrations import HEAD, REVISIONS
from backend.models import Base
from backend.seed import SEED_NAME
from backend.settings import BackendSettings
from tests.conftest import StartService
from tests.containers.instructions import final_env
from tests.containers.test_images import can_mount_read_only, compose, read_only
from tests.support import ROOT, PostgresServer, base_env, migrate_database

T = TypeVar("T")


def url_of(database_url: str) -> URL:
    return BackendSettings(database_url=database_url).database_url_object()


def on_connection(database_url: str, work: Callable[[Connection], T]) -> T:
    """Run ``work`` on a connection of the database and commit."""

    async def _run() -> T:
        engine = create_engine(url_of(database_url), pool_size=1)
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(work)
        finally:
            await engine.dispose()

    return asyncio.run(_run())


def rows(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    def read(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
        return {
            table: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
            for table in ("items", "notifications")
        }

    return on_connection(database_url, read)


def indexes(database_url: str) -> dict[str, set[str]]:
    def read(conn: Connection) -> dict[str, set[str]]:
        inspector = inspect(conn)
        return {
            table: {str(i["name"]) for i in inspector.get_indexes(table)}
            for table in ("items", "notifications")
        }

    return on_connection(database_url, read)


def tables(database_url: str) -> set[str]:
    return set(on_connection(database_url, lambda conn: inspect(conn).get_table_names()))


def test_migrations_produce_exactly_the_models_schema(database_url: str) -> None:
    """Autogenerate finds nothing to do: the models and the migrations never diverge."""
    asyncio.run(upgrade(url_of(database_url)))

    def differences(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    assert on_connection(database_url, differences) == []


def test_a_model_change_without_a_migration_is_found(database_url: str) -> None:
    """The check above can fail: a column the migrations lack is reported."""
    asyncio.run(upgrade(url_of(database_url)))
    on_connection(
        database_url, lambda conn: conn.execute(text("ALTER TABLE items DROP COLUMN name"))
    )

    def differences(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    found = on_connection(database_url, differences)
    assert [(d[0], d[3].name) for d in found] == [("add_column", "name")]


def test_revisions_constant_lists_the_migration_files_in_order() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD], "one head: the history is linear"
    chain = tuple(r.revision for r in reversed(list(script.walk_revisions())))
    assert chain == REVISIONS, "update backend.migrations.REVISIONS with the new migration"


def test_migrate_twice_changes_nothing(database_url: str) -> None:
    url = url_of(database_url)
    first = asyncio.run(upgrade(url, seed=True))
    assert (first.before, first.after, first.seeded) == (None, HEAD, True)
    after_first = rows(database_url)
    second = asyncio.run(upgrade(url, seed=True))
    assert (second.before, second.after, second.seeded) == (HEAD, HEAD, False)
    assert rows(database_url) == after_first
    assert [len(after_first["items"]), len(after_first["notifications"])] == [3, 2]
    assert {row[2] for row in after_first["items"]} == {SEED_NAME}


def test_second_migration_keeps_data_and_goes_back_down(database_url: str) -> None:
    url = url_of(database_url)
    asyncio.run(upgrade(url, "0001", seed=True))
    on_connection(
        database_url,
        lambda conn: conn.execute(
            text(
                "INSERT INTO items (title, name, content, favorite, created_at) "
                "VALUES ('kept', 'me', 'body', true, CURRENT_TIMESTAMP)"
            )
        ),
    )
    data = rows(database_url)
    assert indexes(database_url) == {
        "items": {"ix_items_favorite"},
        "notifications": {"ix_notifications_unread"},
    }

    assert asyncio.run(upgrade(url)).after == "0002"
    assert indexes(database_url) == {
        "items": {"ix_items_favorite_id"},
        "notifications": {"ix_notifications_unread_id"},
    }
    assert rows(database_url) == data

    assert asyncio.run(downgrade(url, "0001")).after == "0001"
    assert indexes(database_url)["items"] == {"ix_items_favorite"}
    assert rows(database_url) == data

    assert asyncio.run(downgrade(url, "base")).after is None
    assert tables(database_url) == {"alembic_version"}


def test_database_made_before_migrations_is_adopted_with_its_data(database_url: str) -> None:
    """A database the service created itself (create_all, no revision) becomes 0001, then head."""
    url = url_of(database_url)
    asyncio.run(upgrade(url, "0001", seed=True))
    on_connection(database_url, lambda conn: conn.execute(text("DROP TABLE alembic_version")))
    data = rows(database_url)
    outcome = asyncio.run(upgrade(url, seed=True))
    assert (outcome.before, outcome.after, outcome.seeded) == (None, HEAD, False)
    assert rows(database_url) == data


def run_cli(tmp_path: Path, database_url: str, *args: str, **env: str) -> tuple[int, list[Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "backend", *args],
        cwd=tmp_path,
        env=base_env(DATABASE_URL=database_url, **env),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("environment", ["staging", "production"])
def test_seed_is_refused_outside_development_and_test(
    tmp_path: Path, environment: str, postgres: Any
) -> None:
    database_url = postgres.new_database()
    status, lines = run_cli(
        tmp_path,
        database_url,
        "migrate",
        "--seed",
        ENVIRONMENT=environment,
        ALLOWED_HOSTS="backend.internal",
        DATABASE_PASSWORD="unused-by-trust-auth",
        DATABASE_SSL_ROOT_CERT=str(postgres.ca_file),
    )
    assert status == 2
    assert lines[-1]["event"] == "seed data refused"
    assert lines[-1]["level"] == "critical"
    assert tables(database_url) == set(), "nothing is written when refused"

    status, lines = run_cli(
        tmp_path,
        database_url,
        "migrate",
        ENVIRONMENT=environment,
        ALLOWED_HOSTS="backend.internal",
        DATABASE_PASSWORD="unused-by-trust-auth",
        DATABASE_SSL_ROOT_CERT=str(postgres.ca_file),
    )
    assert status == 0, lines
    assert lines[-1]["to_revision"] == HEAD
    assert rows(database_url) == {"items": [], "notifications": []}


def test_sqlite_runner_waits_for_another_runners_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runner queues behind a whole migration: its wait is its own, not a request's."""
    assert migrate.SQLITE_LOCK_WAIT_SECONDS > SQLITE_BUSY_TIMEOUT_SECONDS
    path = tmp_path / "locked.sqlite3"
    url = url_of(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA journal_mode=WAL")

    def hold(seconds: float) -> threading.Thread:
        holder.execute("BEGIN EXCLUSIVE")
        releaser = threading.Timer(seconds, lambda: holder.execute("COMMIT"))
        releaser.start()
        return releaser

    monkeypatch.setattr(migrate, "SQLITE_LOCK_WAIT_SECONDS", 0.5)
    releaser = hold(2.0)
    with pytest.raises(OperationalError, match="database is locked"):
        asyncio.run(upgrade(url))
    releaser.join()

    monkeypatch.setattr(migrate, "SQLITE_LOCK_WAIT_SECONDS", 30.0)
    started = time.monotonic()
    releaser = hold(2.0)
    outcome = asyncio.run(upgrade(url))
    releaser.join()
    holder.close()
    assert time.monotonic() - started >= 1.5
    assert outcome.after == HEAD


def test_cli_reports_a_failed_migration_with_status_1(tmp_path: Path) -> None:
    # A directory where the database file should be: SQLite cannot open it.
    (tmp_path / "db").mkdir()
    status, lines = run_cli(tmp_path, f"sqlite:///{tmp_path / 'db'}", "migrate")
    assert status == 1
    assert lines[-1]["event"] == "migration failed"
    assert lines[-1]["level"] == "error"


# --- readiness follows the database's revision


def unmigrated_client(database_url: str) -> TestClient:
    settings = BackendSettings(database_url=database_url, tracing_enabled=False)
    return TestClient(create_app(settings))


def test_readiness_waits_for_the_migration(database_url: str) -> None:
    url = url_of(database_url)
    with unmigrated_client(database_url) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        schema = response.json()["checks"]["schema"]
        assert "not migrated" in schema
        assert "python -m backend migrate" in schema
        assert response.json()["checks"]["database"] == "ok"
        assert client.get("/healthz").status_code == 200

        asyncio.run(upgrade(url, "0001"))
        response = client.get("/readyz")
        assert response.status_code == 503
        assert f"at revision 0001, this code needs {HEAD}" in response.json()["checks"]["schema"]

        asyncio.run(upgrade(url))
        assert client.get("/readyz").status_code == 200


def test_readiness_accepts_a_newer_revision(database_url: str) -> None:
    """A later release migrated the database first: this code keeps serving (expand/contract)."""
    asyncio.run(upgrade(url_of(database_url), seed=True))
    on_connection(
        database_url,
        lambda conn: conn.execute(text("UPDATE alembic_version SET version_num='0099'")),
    )
    with unmigrated_client(database_url) as client:
        assert client.get("/readyz").status_code == 200
        assert len(client.get("/v1/items").json()["data"]) == 3


def test_a_passing_revision_check_is_cached(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(upgrade(url_of(database_url)))

    def revision_reads(probes: int) -> int:
        reads: list[str] = []

        def count(_: Any, __: Any, statement: str, *___: Any) -> None:
            if statement.startswith("SELECT version_num"):
                reads.append(statement)

        with unmigrated_client(database_url) as client:
            engine: Any = client.app.state.engine  # type: ignore[attr-defined]
            event.listen(engine.sync_engine, "before_cursor_execute", count)
            for _ in range(probes):
                assert client.get("/readyz").status_code == 200
        return len(reads)

    assert revision_reads(5) == 1
    monkeypatch.setattr(revision_check, "CACHE_SECONDS", 0.0)
    assert revision_reads(5) == 5


@pytest.mark.quick
def test_service_process_becomes_ready_once_migrated(
    start: StartService, tmp_path: Path, database_url: str
) -> None:
    """The real process starts, says why it is not ready, and needs no restart after migrate."""
    backend = start(
        "backend",
        env={"DATABASE_URL": database_url, "AWS_XRAY_SDK_ENABLED": "false"},
        migrate=False,
        wait=False,
    )
    response = None
    deadline = time.monotonic() + 20
    while response is None and time.monotonic() < deadline:
        try:
            response = httpx.get(f"{backend.url}/readyz", timeout=1)
        except httpx.HTTPError:
            time.sleep(0.05)
    assert response is not None, backend.stderr()
    assert response.status_code == 503
    assert "not migrated" in response.json()["checks"]["schema"]
    assert any(line["event"] == "database not ready" for line in backend.log_lines())
    migrate_database(tmp_path, backend.env)
    backend.wait_ready(timeout=10)
    assert len(httpx.get(f"{backend.url}/v1/items").json()["data"]) == 3
    assert backend.stop(signal.SIGTERM) == 0


@pytest.mark.slow
@pytest.mark.skipif(
    not can_mount_read_only(), reason="needs root and unshare for read-only bind mounts"
)
def test_compose_migrate_service_runs_on_a_read_only_image(tmp_path: Path) -> None:
    """The compose ``migrate`` command, with the image's environment, code read-only.

    As in the container: only the data volume is writable, and the backend
    then starts ready on what it wrote.
    """
    service = compose()["services"]["migrate"]
    env = final_env(ROOT / "Dockerfile.backend")
    env.update({k: str(v) for k, v in service["environment"].items()})
    data = tmp_path / "data"
    data.mkdir()
    workdir = tmp_path / "app"
    workdir.mkdir(mode=0o555)
    env["DATABASE_URL"] = env["DATABASE_URL"].replace("/data/", f"{data}/")
    env["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    result = subprocess.run(
        read_only(service["command"], ROOT, workdir),
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    last_line = json.loads(result.stdout.splitlines()[-1])
    assert (last_line["to_revision"], last_line["seeded"]) == (HEAD, True)
    assert list(workdir.iterdir()) == []
    with unmigrated_client(env["DATABASE_URL"]) as client:
        assert client.get("/readyz").status_code == 200


def test_migrate_waits_for_the_advisory_lock_on_postgresql(postgres: PostgresServer) -> None:
    """A runner holding the lock (here psql) makes another wait, then it finds its work done."""
    database_url = postgres.new_database()
    name = database_url.rsplit("/", 1)[1]
    holder = subprocess.Popen(
        ["psql", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "app", "-d", name, "-q"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert holder.stdin is not None
    holder.stdin.write(f"BEGIN;\nSELECT pg_advisory_xact_lock({LOCK_KEY});\n\\echo locked\n")
    holder.stdin.flush()
    assert holder.stdout is not None
    outcome: list[Any] = []
    runner = threading.Thread(
        target=lambda: outcome.append(asyncio.run(upgrade(url_of(database_url), seed=True)))
    )
    try:
        deadline = time.monotonic() + 10
        while "locked" not in holder.stdout.readline() and time.monotonic() < deadline:
            pass
        runner.start()
        time.sleep(1.5)
        assert runner.is_alive(), "the second runner did not wait for the lock"
        waiting = postgres.psql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
        assert b" 1\n" in waiting.stdout
        assert tables(database_url) == set()
    finally:
        holder.stdin.write("COMMIT;\n")
        holder.stdin.close()
        holder.wait(timeout=30)
        if runner.ident is not None:
            runner.join(timeout=60)
    assert outcome[0].after == HEAD
    assert outcome[0].seeded is True
