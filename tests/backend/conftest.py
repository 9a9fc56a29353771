from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.settings import BackendSettings
from tests.support import sqlite_url

MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[MakeClient]:
    """A TestClient on a backend with its own SQLite file; extra settings by keyword."""
    clients: list[TestClient] = []

    def _make(**settings: Any) -> TestClient:
        settings.setdefault("database_url", sqlite_url(tmp_path / "backend.sqlite3"))
        settings.setdefault("tracing_enabled", False)
        client = TestClient(create_app(BackendSettings(**settings)))
        client.__enter__()
        clients.append(client)
        return client

    yield _make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()
