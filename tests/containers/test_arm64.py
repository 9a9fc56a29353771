"""The services' images are built for linux/arm64 (the task definitions' runtimePlatform
is ARM64): every locked dependency of both services must install on aarch64 from a
wheel, or the arm64 build would compile it under QEMU (or fail for lack of a compiler
in the slim image).

The lock is exported per service as the Dockerfiles install it (``uv sync --frozen
--no-dev --package``) and installed with uv for an aarch64 manylinux target into a
scratch directory, wheels only. This needs PyPI; offline the test is skipped.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT

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
