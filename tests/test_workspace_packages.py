"""Each workspace package installs alone, with only what it declares, and its entry point runs.

The workspace installs every package into one environment, where an
undeclared import still works; here each is synced by itself (``uv sync
--package``, from ``uv.lock``, offline: the packages come from uv's cache,
which ``dev.py`` filled) into an environment of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).with_name("uv")

# (package, extra, [(command, expected exit status, text the output must contain)])
PACKAGES = [
    (
        "sbcntr-servicekit",
        None,
        [(["python", "-c", "import servicekit.app, servicekit.runner"], 0, "")],
    ),
    ("sbcntr-backend", None, [(["python", "-m", "backend", "--help"], 0, "migrate")]),
    (
        "sbcntr-frontend",
        None,
        [(["python", "-c", "import frontend.app, frontend.settings"], 0, "")],
    ),
    (
        "sbcntr-tools",
        None,
        [
            (["sbcntrctl", "--help"], 0, "deploy"),
            (["sbcntrctl", "deploy", "--help"], 0, "verify"),
            (["sbcntrctl", "infra", "--help"], 0, "deploy"),
            # The bench runs the services: without its extra, one line says how to get them.
            (["sbcntrctl", "bench", "--quick"], 2, "--extra bench"),
        ],
    ),
    (
        "sbcntr-tools",
        "bench",
        [
            (
                [
                    "python",
                    "-c",
                    "import sbcntrctl.bench.harness, servicekit.metrics, backend, frontend",
                ],
                0,
                "",
            )
        ],
    ),
]


@pytest.mark.parametrize(("package", "extra", "commands"), PACKAGES)
def test_package_installs_alone_and_runs(
    tmp_path: Path, package: str, extra: str | None, commands: list[tuple[list[str], int, str]]
) -> None:
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
    sync = [
        str(UV),
        "sync",
        "--frozen",
        "--offline",
        "--package",
        package,
        "--python",
        sys.executable,
        "--quiet",
    ]
    if extra:
        sync += ["--extra", extra]
    done = subprocess.run(sync, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for command, status, expected in commands:
        ran = subprocess.run(
            [str(venv / "bin" / command[0]), *command[1:]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
        )
        output = ran.stdout + ran.stderr
        assert ran.returncode == status, f"{package}: {' '.join(command)}:\n{output[-2000:]}"
        assert expected in output, f"{package}: {' '.join(command)}:\n{output[-2000:]}"
