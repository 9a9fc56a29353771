"""The services' images are built for linux/arm64 (the task definitions' runtimePlatform
is ARM64): every locked dependency of both services must install on aarch64 from a
wheel, or the arm64 build would compile it under QEMU (or fail for lack of a compiler
in the slim image).

The lock is exported per service as the Dockerfiles install it (``uv sync --frozen
--no-dev --package``) and installed with uv for an aarch64 manylinux target into a
scratch directory, wheels only. This needs PyPI; offline the test is skipped.

With ``SBCNTR_ARM64_QEMU=1`` (two to three minutes, so not in the default
run) the backend also starts from that arm64 install: Debian bookworm's arm64
``python3.11`` (the images' base is bookworm) unpacked into a scratch root,
run by ``qemu-aarch64-static`` (Debian's ``qemu-user-static``), migrates a
database and answers ``/readyz``.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT, free_port, sqlite_url, stop_process

UV = Path(sys.executable).parent / "uv"
# The images' base is Debian bookworm (glibc 2.36); manylinux_2_28 is the stricter
# floor most aarch64 wheels are built for.
PLATFORM = "aarch64-manylinux_2_28"
SERVICES = {"backend": "sbcntr-backend", "frontend": "sbcntr-frontend"}


def python_version() -> str:
    """The image's Python (``FROM python:3.11.x-...`` in the Dockerfiles)."""
    versions: set[str] = set()
    for service in SERVICES:
        text = (ROOT / f"Dockerfile.{service}").read_text(encoding="utf-8")
        versions |= set(re.findall(r"^FROM python:(\d+\.\d+)\.", text, re.MULTILINE))
    (version,) = versions
    return str(version)


@pytest.fixture(scope="module")
def pypi() -> None:
    try:
        httpx.head("https://pypi.org/simple/", timeout=5, follow_redirects=True)
    except httpx.HTTPError as exc:
        pytest.skip(f"PyPI is not reachable ({exc}): the aarch64 wheels cannot be resolved")


def locked_requirements(package: str, out: Path) -> Path:
    command = [str(UV), "export", "--project", str(ROOT), "--frozen", "--no-dev"]
    command += ["--package", package, "--no-emit-workspace", "--quiet", "--output-file", str(out)]
    subprocess.run(
        command,
        check=True,
        timeout=60,
    )
    return out


def install_for_arm64(requirements: Path, target: Path) -> subprocess.CompletedProcess[str]:
    command = [str(UV), "pip", "install", "--python-platform", PLATFORM]
    command += ["--python-version", python_version(), "--only-binary", ":all:", "--no-deps"]
    command += ["--target", str(target), "--requirements", str(requirements)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.mark.usefixtures("pypi")
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_locked_dependency_has_an_aarch64_wheel(service: str, tmp_path: Path) -> None:
    requirements = locked_requirements(SERVICES[service], tmp_path / "requirements.txt")
    done = install_for_arm64(requirements, tmp_path / "site")
    assert done.returncode == 0, done.stderr
    installed = {p.name.split("-")[0].lower() for p in (tmp_path / "site").glob("*.dist-info")}
    assert {"uvicorn", "fastapi", "uvloop"} <= installed


@pytest.mark.usefixtures("pypi")
def test_a_dependency_without_an_aarch64_wheel_is_named(tmp_path: Path) -> None:
    """pywin32 ships Windows wheels only."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pywin32==306\n", encoding="utf-8")
    done = install_for_arm64(requirements, tmp_path / "site")
    assert done.returncode != 0
    assert "pywin32" in done.stderr


QEMU = shutil.which("qemu-aarch64-static")
# What the interpreter needs beyond itself: the C++ runtime of compiled wheels
# (greenlet), which bookworm-slim, the images' base, has.
ARM64_PACKAGES = ("python3.11", "libstdc++6")


def arm64_root(scratch: Path) -> Path:
    """Debian's arm64 python3.11 and the libraries it needs, unpacked under ``scratch``
    with apt's own state kept there (the machine's apt configuration is not touched)."""
    state = scratch / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    options = [
        "-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64",
        "-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache={state / 'cache'}",
        "-o", f"Dir::State::status={state / 'status'}", "-o", "Debug::NoLocking=1", "-q",
    ]  # fmt: skip
    for args in (["update"], ["install", "--download-only", "-y", "--no-install-recommends"]):
        extra = list(ARM64_PACKAGES) if args[0] == "install" else []
        done = subprocess.run(
            ["apt-get", *options, *args, *extra],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.skip(f"the Debian arm64 packages cannot be fetched: {done.stderr[-300:]}")
    root = scratch / "root"
    for package in sorted((state / "cache" / "archives").glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(package), str(root)], check=True, timeout=120)
    return root


@pytest.mark.usefixtures("pypi")
@pytest.mark.skipif(
    os.environ.get("SBCNTR_ARM64_QEMU") != "1",
    reason="two to three minutes under QEMU: set SBCNTR_ARM64_QEMU=1 to run it",
)
@pytest.mark.skipif(QEMU is None, reason="qemu-aarch64-static: apt-get install qemu-user-static")
def test_the_backend_answers_readyz_on_arm64_under_qemu(tmp_path: Path) -> None:
    assert QEMU is not None
    root = arm64_root(tmp_path)
    site = tmp_path / "site"
    done = install_for_arm64(locked_requirements(SERVICES["backend"], tmp_path / "req.txt"), site)
    assert done.returncode == 0, done.stderr
    # The workspace packages, built as the image builds them (not editable).
    command = [str(UV), "pip", "install", "--quiet", "--python-platform", PLATFORM, "--no-deps"]
    command += ["--python-version", python_version(), "--target", str(site)]
    subprocess.run(
        [*command, str(ROOT / "servicekit"), str(ROOT / "backend")],
        check=True,
        timeout=120,
    )
    python = [QEMU, "-L", str(root), str(root / "usr" / "bin" / "python3.11")]
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(site),
        "PYTHONUNBUFFERED": "1",
        "PORT": str(port),
        "DATABASE_URL": sqlite_url(tmp_path / "db.sqlite"),
    }
    machine = subprocess.run(
        [*python, "-c", "import platform; print(platform.machine())"],
        capture_output=True, text=True, check=True, env=env, timeout=60,
    )  # fmt: skip
    assert machine.stdout.strip() == "aarch64" != platform.machine()
    subprocess.run(
        [*python, "-m", "backend", "migrate", "--seed"],
        capture_output=True, check=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    log_path = tmp_path / "backend.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*python, "-m", "backend"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    url = f"http://127.0.0.1:{port}"
    try:
        ready = wait_ready(process, f"{url}/readyz", seconds=180)
        items = httpx.get(f"{url}/v1/items", timeout=10)
    finally:
        status = stop_process(process, signal.SIGTERM, timeout=60)
    assert ready is not None, log_path.read_text()[-2000:]
    assert ready["checks"]["database"] == "ok"
    assert items.status_code == 200
    assert status == 0


def wait_ready(process: subprocess.Popen[bytes], url: str, seconds: float) -> dict[str, Any] | None:
    """``/readyz``'s 200 body once it answers so (None: the process exited or time ran out)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            answer = httpx.get(url, timeout=2)
            if answer.status_code == 200:
                body: dict[str, Any] = answer.json()
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return None
