from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import StartService
from tests.support import Service, sqlite_url


@dataclass
class Stack:
    backend: Service
    frontend: Service


def start_stack(
    start: StartService,
    tmp_path: Path,
    *,
    backend_env: dict[str, str] | None = None,
    frontend_env: dict[str, str] | None = None,
) -> Stack:
    """Both services as processes, the frontend pointed at the backend."""
    backend = start(
        "backend",
        env={"DATABASE_URL": sqlite_url(tmp_path / "stack.sqlite3"), **(backend_env or {})},
    )
    frontend = start("frontend", env={"BACKEND_URL": backend.url, **(frontend_env or {})})
    return Stack(backend, frontend)


@pytest.fixture
def stack(start: StartService, tmp_path: Path) -> Stack:
    return start_stack(
        start,
        tmp_path,
        backend_env={"AWS_XRAY_SDK_ENABLED": "false"},
        frontend_env={"AWS_XRAY_SDK_ENABLED": "false"},
    )
