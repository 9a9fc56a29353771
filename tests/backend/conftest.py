from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.migrate import upgrade
from backend.settings import BackendSettings
from tests.support import PostgresServer, sqlite_url

MakeClient = Callable[..., TestClient]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; each test gets its own database."""
    try:
        server = PostgresServer().start()
    except FileNotFoundError as exc:
        pytest.skip(f"PostgreSQL tests need the server binaries: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The backend's database, once as the embedded default and once as PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "backend.sqlite3")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


def migrate(database_url: str, revision: str = "head", *, seed: bool = True) -> None:
    """Migrate (and seed) the database as ``python -m backend migrate --seed`` does."""
    url = BackendSettings(database_url=database_url).database_url_object()
    asyncio.run(upgrade(url, revision, seed=seed))


@pytest.fixture
def make_client(database_url: str) -> Iterator[MakeClient]:
    """A TestClient on a backend with its own fresh, migrated and seeded database.

    Extra settings by keyword. ``client_host`` is the peer address the app
    sees (TestClient's is not an IP); ``raise_server_exceptions=False`` shows
    what a client of an unhandled exception receives.
    """
    migrate(database_url)
    with ExitStack() as started:

        def _make(
            *,
            client_host: str = "testclient",
            raise_server_exceptions: bool = True,
            **settings: Any,
        ) -> TestClient:
            settings.setdefault("database_url", database_url)
            settings.setdefault("tracing_enabled", False)
            app = create_app(BackendSettings(**settings))
            client = TestClient(
                app,
                client=(client_host, 50000),
                raise_server_exceptions=raise_server_exceptions,
            )
            return started.enter_context(client)

        yield _make


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()
