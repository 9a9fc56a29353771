"""Readiness for writes: a full disk under SQLite, a read-only PostgreSQL session.

For SQLite the database lives on a small tmpfs mounted for the test (root
only; skipped otherwise), filled up with a junk file while the real backend
process runs: writes fail with the JSON error and readiness says why, then
both recover.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.settings import BackendSettings
from tests.backend.conftest import migrate
from tests.conftest import StartService
from tests.support import PostgresServer, sqlite_url


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(path: Path) -> None:
    with path.open("wb") as junk:
        try:
            while True:
                junk.write(b"\0" * 65536)
                junk.flush()
        except OSError:
            pass


@pytest.mark.slow
def test_a_full_disk_fails_writes_with_the_json_error_and_readiness(
    start: StartService, small_disk: Path
) -> None:
    backend = start(
        "backend",
        env={
            "DATABASE_URL": sqlite_url(small_disk / "backend.sqlite3"),
            "AWS_XRAY_SDK_ENABLED": "false",
        },
    )
    assert httpx.post(f"{backend.url}/v1/items", json={"title": "before"}).status_code == 201
    junk = small_disk / "junk"
    fill(junk)

    ready = httpx.get(f"{backend.url}/readyz")
    assert ready.status_code == 503
    assert "bytes free" in ready.json()["checks"]["database_writes"]
    failed = [
        httpx.post(f"{backend.url}/v1/items", json={"title": "x" * 100, "content": "y" * 1000})
        for _ in range(50)
    ]
    statuses = {response.status_code for response in failed}
    assert statuses <= {201, 500}, statuses
    assert 500 in statuses
    errors = [response.json() for response in failed if response.status_code == 500]
    assert all(body["error"] == "internal_error" and body["request_id"] for body in errors)
    assert httpx.get(f"{backend.url}/v1/items").status_code == 200  # reads still work

    junk.unlink()
    assert httpx.get(f"{backend.url}/readyz").status_code == 200
    assert httpx.post(f"{backend.url}/v1/items", json={"title": "after"}).status_code == 201


def test_a_read_only_postgresql_session_fails_readiness(postgres: PostgresServer) -> None:
    url = postgres.new_database()
    migrate(url)  # a service is ready only on a migrated database
    settings = BackendSettings(database_url=url, tracing_enabled=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        name = url.rsplit("/", 1)[1]
        done = postgres.psql(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
        assert done.returncode == 0, done.stderr
        client.portal.call(client.app.state.engine.dispose)  # type: ignore[attr-defined, union-attr]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "read-only" in ready.json()["checks"]["database_writes"]
