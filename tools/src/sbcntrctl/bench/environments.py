"""The services' Python environments, as their images install them.

The bench runs each service from an environment holding that service's
locked dependencies only, installed the way its Dockerfile installs them
(``uv sync --frozen --no-dev --package sbcntr-<service> --no-editable``,
bytecode compiled). The development environment also holds the test and
tool packages, and some change what a service loads: structlog imports
``rich`` when it is installed (a dependency of the API test tool, never of a
service), 4.7 MB of a service's resident memory that no image has.

The environments live in ``reports/bench/environments/`` (git-ignored) and
are synced again on every run: uv reinstalls what the lock file or a
service's sources changed, and nothing else (about a second when nothing did).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SERVICES = ("backend", "frontend")


class ServiceEnvironmentError(RuntimeError):
    """A service environment could not be made; the message says why, in one line."""


def _uv() -> str:
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        msg = "uv is needed to build the services' environments (python3 dev.py test installs it)"
        raise ServiceEnvironmentError(msg)
    return found


def sync_service(root: Path, service: str, target: Path) -> Path:
    """Install ``service`` into the environment ``target`` as its image does; its interpreter.

    The interpreter is this one's Python (``UV_PYTHON``), as the images use
    one Python for building and running.
    """
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(target),
        "UV_PYTHON": sys.executable,
        "UV_COMPILE_BYTECODE": "1",
    }
    command = [
        _uv(),
        "sync",
        "--frozen",
        "--no-dev",
        "--package",
        f"sbcntr-{service}",
        "--no-editable",
        "--quiet",
    ]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        msg = f"the {service} environment could not be synced: {last}"
        raise ServiceEnvironmentError(msg)
    return target / "bin" / "python"


def service_pythons(root: Path, directory: Path | None = None) -> dict[str, str]:
    """Each service's interpreter, in an environment synced as its image's is."""
    directory = directory or root / "reports" / "bench" / "environments"
    return {service: str(sync_service(root, service, directory / service)) for service in SERVICES}
