from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from frontend.app import create_app
from frontend.settings import FrontendSettings
from tests.support import Service, sqlite_url, start_service

MakeFrontend = Callable[..., TestClient]


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Service]:
    """A real backend process with a fresh database."""
    service = start_service(
        "backend",
        tmp_path,
        env={"DATABASE_URL": sqlite_url(tmp_path / "b.sqlite3"), "AWS_XRAY_SDK_ENABLED": "false"},
    )
    yield service
    service.stop()


@pytest.fixture
def make_frontend() -> Iterator[MakeFrontend]:
    """A TestClient on the frontend app; settings by keyword (``backend_url`` at least).

    ``raise_server_exceptions=False`` shows what a client of an unhandled error receives.
    """
    with ExitStack() as started:

        def _make(*, raise_server_exceptions: bool = True, **settings: Any) -> TestClient:
            settings.setdefault("tracing_enabled", False)
            app = create_app(FrontendSettings(**settings))
            client = TestClient(
                app, follow_redirects=False, raise_server_exceptions=raise_server_exceptions
            )
            return started.enter_context(client)

        yield _make


@pytest.fixture
def frontend(make_frontend: MakeFrontend, backend: Service) -> TestClient:
    return make_frontend(backend_url=backend.url)
