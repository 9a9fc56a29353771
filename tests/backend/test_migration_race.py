"""The first deployment on a fresh database, with real processes on both databases.

Two migrate runners and two backends start at the same moment on an empty
database, ten times: the runners serialise on the migration lock (one
migrates and seeds, the other finds nothing to do), both backends become
ready once the schema is there, nothing crashes and no row is doubled.

Then an additive migration runs while the code of the release before it
serves: that code stays ready and keeps answering.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, text

from backend.migrations import HEAD, REVISIONS
from tests.backend.test_migrations import on_connection
from tests.conftest import StartService
from tests.support import ROOT, PostgresServer, base_env, migrate_database, sqlite_url

# Left out by dev.py test --quick (backend: test_migrations and test_api run the real database).
pytestmark = pytest.mark.slow

TRIALS = 10

NewDatabase = Callable[[], str]


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> NewDatabase:
    """Make a fresh, empty database on each call: a SQLite file or a PostgreSQL database."""
    if request.param == "sqlite":
        count = iter(range(1000))
        return lambda: sqlite_url(tmp_path / f"fresh-{next(count)}.sqlite3")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database


def counts(database_url: str) -> dict[str, Any]:
    def read(conn: Connection) -> dict[str, Any]:
        return {
            "items": conn.scalar(text("SELECT count(*) FROM items")),
            "notifications": conn.scalar(text("SELECT count(*) FROM notifications")),
            "revisions": conn.execute(text("SELECT version_num FROM alembic_version")).all(),
        }

    return on_connection(database_url, read)


def test_runners_and_backends_started_together_on_a_fresh_database(
    start: StartService, tmp_path: Path, new_database: NewDatabase
) -> None:
    for trial in range(TRIALS):
        database_url = new_database()
        env = base_env(DATABASE_URL=database_url, AWS_XRAY_SDK_ENABLED="false")
        runners = [
            subprocess.Popen(
                [sys.executable, "-m", "backend", "migrate", "--seed"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        backends = [start("backend", env=dict(env), migrate=False, wait=False) for _ in range(2)]
        outputs = [runner.communicate(timeout=120)[0] for runner in runners]
        failed = [
            out.splitlines()[-3:]
            for runner, out in zip(runners, outputs, strict=True)
            if runner.returncode
        ]
        assert not failed, f"trial {trial}: runner failed; its last lines: {failed}"
        migrated = [out for out in outputs if '"seeded":true' in out]
        assert len(migrated) == 1, f"trial {trial}: exactly one runner seeds: {outputs}"
        for backend in backends:
            backend.wait_ready(timeout=60)
        assert counts(database_url) == {"items": 3, "notifications": 2, "revisions": [(HEAD,)]}
        for backend in backends:
            assert backend.process.poll() is None
            assert httpx.get(f"{backend.url}/v1/notifications/count").json() == {"unread": 2}
            problems = [r for r in backend.log_lines() if r["level"] in ("error", "critical")]
            assert not problems, f"trial {trial}: {problems}"
            assert backend.stop(signal.SIGTERM) == 0


def old_release(tmp_path: Path) -> Path:
    """The backend package as it was released before migration 0002 (head 0001).

    Made from this code by removing 0002: that release's models differ from
    these only in index declarations, which change no query's result.
    """
    old = tmp_path / "old-release"
    shutil.copytree(
        ROOT / "backend/src/backend", old / "backend", ignore=shutil.ignore_patterns("__pycache__")
    )
    (old / "backend/migrations/versions/0002_list_indexes.py").unlink()
    init = old / "backend/migrations/__init__.py"
    listed = "REVISIONS: tuple[str, ...] = (" + ", ".join(f'"{r}"' for r in REVISIONS) + ")"
    assert listed in init.read_text()
    init.write_text(init.read_text().replace(listed, 'REVISIONS: tuple[str, ...] = ("0001",)'))
    return old


def test_old_release_keeps_serving_during_an_additive_migration(
    start: StartService, tmp_path: Path, new_database: NewDatabase
) -> None:
    database_url = new_database()
    old_env = {
        "DATABASE_URL": database_url,
        "AWS_XRAY_SDK_ENABLED": "false",
        "PYTHONPATH": str(old_release(tmp_path)),
    }
    old = start("backend", env=old_env)  # migrates with its own code: 0001, seeded
    assert counts(database_url)["revisions"] == [("0001",)]
    started = next(r for r in old.log_lines() if r["event"] == "database ready")
    assert started["revision"] == "0001"

    answers: list[tuple[str, int]] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=old.url, timeout=20) as client:
            while not stop.is_set():
                for method, path, body in (
                    ("GET", "/readyz", None),
                    ("GET", "/v1/items?favorite=true", None),
                    ("POST", "/v1/items", {"title": "during migration"}),
                    ("PUT", "/v1/items/1/favorite", {"favorite": True}),
                    ("GET", "/v1/notifications?unread=true", None),
                ):
                    response = client.request(method, path, json=body)
                    answers.append((f"{method} {path}", response.status_code))

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        time.sleep(0.5)
        before = len(answers)
        migrate_database(tmp_path, {**old.env, "PYTHONPATH": ""}, "migrate")
        deadline = time.monotonic() + 10
        while len(answers) < before + 50 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert counts(database_url)["revisions"] == [(HEAD,)]
    failed = [answer for answer in answers if answer[1] >= 300]
    assert not failed, failed
    assert len(answers) > before + 50, "traffic went on after the migration"
    assert old.process.poll() is None

    # A task of the old release started now (a scale-out, a replacement) is
    # ready too: the database's newer revision is not one it must wait for.
    another_old = start("backend", env=old_env, migrate=False)
    newer = [r for r in another_old.log_lines() if r["event"].startswith("database revision newer")]
    assert newer[0]["database_revision"] == HEAD
    assert newer[0]["code_revision"] == "0001"

    new = start("backend", env={"DATABASE_URL": database_url, "AWS_XRAY_SDK_ENABLED": "false"})
    created = httpx.get(f"{new.url}/v1/items", params={"limit": 500}).json()["data"]
    assert sum(item["title"] == "during migration" for item in created) == sum(
        answer[0] == "POST /v1/items" for answer in answers
    )
