"""The images compile nothing at run time: the standard library is compiled at build time.

The slim Python base image ships its standard library without bytecode, and
the containers run with a read-only root and ``PYTHONDONTWRITEBYTECODE=1``,
so whatever is not compiled in the image is compiled again by every start and
every health check. Checked here without an engine: a copy of this
interpreter with its standard library stripped of bytecode, as the base image
ships it, compiled by the Dockerfiles' own command; then the health check and
a service start run on it with ``PYTHONVERBOSE``, which names every module
compiled from source.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest

from tests.containers.instructions import stages
from tests.containers.test_images import run_as_image, wait_healthy
from tests.support import ROOT, free_port

VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"
BASE_BINARY = Path(sys.base_prefix) / "bin" / VERSION
# "# code object from /path/module.py" (a .pyc is named quoted): compiled from source.
FROM_SOURCE = re.compile(r"^# code object from (/\S+\.py)$", re.MULTILINE)


def compile_command() -> str:
    """The base stage's compile step, the same in both service Dockerfiles."""
    base = [stages(ROOT / f"Dockerfile.{service}")[0] for service in ("backend", "frontend")]
    assert base[0].instructions == base[1].instructions, "the base stages differ"
    runs = [args for name, args in base[0].instructions if name == "RUN" and "compileall" in args]
    assert len(runs) == 1, base[0].instructions
    return runs[0]


@pytest.fixture(scope="module")
def slim_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prefix with this interpreter and its standard library, without bytecode or tests."""
    if not BASE_BINARY.exists():
        pytest.skip(f"no interpreter binary at {BASE_BINARY} to copy")
    root = tmp_path_factory.mktemp("slim-python")
    (root / "bin").mkdir()
    shutil.copy2(BASE_BINARY, root / "bin" / VERSION)
    (root / "bin" / "python").symlink_to(VERSION)
    shutil.copytree(
        sysconfig.get_path("stdlib"),
        root / "lib" / VERSION,
        # What the slim image leaves out, and the bytecode it does not ship.
        ignore=shutil.ignore_patterns(
            "site-packages", "__pycache__", "test", "tests", "idle_test", "config-*"
        ),
    )
    probe = subprocess.run(
        [str(root / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0 or probe.stdout.strip() != str(root):
        pytest.skip(f"the copied interpreter does not run from its own prefix: {probe}")
    return root


def image_env(root: Path, **extra: str) -> dict[str, str]:
    """As in the image: no bytecode written; verbose imports to see what is compiled."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra, PYTHONDONTWRITEBYTECODE="1", PYTHONVERBOSE="1")
    env["PATH"] = f"{root / 'bin'}:{os.environ['PATH']}"
    return env


def stdlib_compiled_from_source(root: Path, verbose_output: str) -> list[str]:
    stdlib = f"{root / 'lib' / VERSION}/"
    return [path for path in FROM_SOURCE.findall(verbose_output) if path.startswith(stdlib)]


def run_health_check(root: Path) -> str:
    """The image's health check (against a closed port: the imports are the same)."""
    env = image_env(root, PORT=str(free_port()), PYTHONPATH=str(ROOT / "servicekit" / "src"))
    result = subprocess.run(
        [str(root / "bin" / "python"), "-m", "servicekit.healthcheck"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    return result.stderr


@pytest.mark.slow
def test_the_health_check_and_a_start_compile_no_standard_library_module(
    slim_python: Path, tmp_path: Path
) -> None:
    # Without the build step the health check compiles what it imports: the
    # check below can see it.
    assert stdlib_compiled_from_source(slim_python, run_health_check(slim_python))

    subprocess.run(
        ["sh", "-c", compile_command()],
        env={**os.environ, "PATH": f"{slim_python / 'bin'}:{os.environ['PATH']}"},
        check=True,
        capture_output=True,
    )
    assert stdlib_compiled_from_source(slim_python, run_health_check(slim_python)) == []

    # A service start on the same interpreter: a virtual environment of it
    # that sees the project's installed packages.
    venv = tmp_path / "venv"
    subprocess.run(
        [str(slim_python / "bin" / "python"), "-m", "venv", "--without-pip", str(venv)],
        check=True,
        capture_output=True,
    )
    site_packages = venv / "lib" / VERSION / "site-packages"
    (site_packages / "project.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n"
    )
    data = tmp_path / "data"
    data.mkdir()
    env = {**image_env(slim_python), **run_as_image("backend", data)}
    env["PATH"] = f"{venv / 'bin'}:{os.environ['PATH']}"
    # The schema first, as the compose migrate service does before the backend.
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "backend", "migrate"],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    # The verbose import trace is long: to a file, not a pipe that could fill.
    trace = tmp_path / "imports.log"
    with trace.open("w") as stderr:
        server = subprocess.Popen(
            [str(venv / "bin" / "python"), "-m", "backend"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            url = f"http://127.0.0.1:{env['PORT']}/readyz"
            wait_healthy(server, url, timeout=30)
            assert httpx.get(url).status_code == 200
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    verbose = trace.read_text()
    assert server.returncode == 0, verbose[-2000:]
    assert "code object from" in verbose
    assert stdlib_compiled_from_source(slim_python, verbose) == []
