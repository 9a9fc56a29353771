"""Running the real Fluent Bit with the project's router configuration.

The binary: ``$FLUENT_BIT``, else ``fluent-bit`` on PATH, else
``../shared/tools/fluent-bit-4.2.2/bin/fluent-bit`` beside the repository (as
CI lays it out). The configuration is copied with the image's paths
(``/fluent-bit/etc/sbcntr``, ``/var/fluent-bit``) pointed at a test folder and
the monitoring server on a free loopback port; nothing else changes.

Two ways in, as in production:
- ECS: a main file like the one FireLens generates (a forward input, the ECS
  metadata added by ``record_modifier``) that ``@INCLUDE``s ``sbcntr.conf``;
- docker compose: ``local.conf`` itself.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support import ROOT, free_port, stop_process

CONF = ROOT / "firelens" / "conf"
IMAGE_CONF = "/fluent-bit/etc/sbcntr"
IMAGE_STATE = "/var/fluent-bit"
SHARED_BINARY = ROOT.parent / "shared/tools/fluent-bit-4.2.2/bin/fluent-bit"
TASK_ID = "0123456789abcdef0123456789abcdef"
ECS_METADATA = {
    "ecs_cluster": "sbcntr-test",
    "ecs_task_arn": f"arn:aws:ecs:ap-northeast-1:123456789012:task/sbcntr-test/{TASK_ID}",
    "ecs_task_definition": "sbcntr-backend:7",
}


def firelens_tag(container: str) -> str:
    """The tag FireLens gives a container's records on ECS: ``<container>-firelens-<task id>``."""
    return f"{container}-firelens-{TASK_ID}"


def firelens_stream(container: str) -> str:
    """The CloudWatch Logs stream the router writes a container's records to."""
    return f"task-{firelens_tag(container)}"


def binary() -> str | None:
    """The Fluent Bit executable to test with, or None when there is none."""
    configured = os.environ.get("FLUENT_BIT")
    if configured:
        return configured
    return shutil.which("fluent-bit") or (
        str(SHARED_BINARY) if os.access(SHARED_BINARY, os.X_OK) else None
    )


def image_defaults() -> dict[str, str]:
    """The ``ENV`` defaults the router image sets (firelens/Dockerfile)."""
    text = (ROOT / "firelens/Dockerfile").read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            found.update(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", line))
    return found


def compose_env(service: str = "log-router") -> dict[str, str]:
    """A service's environment in docker-compose.yml (``$$`` is a literal ``$``)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"][service]["environment"]
    return {k: str(v).replace("$$", "$") for k, v in env.items()}


def _replace(text: str, old: str, new: str, name: str) -> str:
    assert old in text, f"{name} no longer holds {old!r}: update the test copy"
    return text.replace(old, new)


def copy_configuration(workdir: Path) -> tuple[Path, int]:
    """The configuration files under ``workdir/conf``; returns the folder and the HTTP port."""
    conf, state = workdir / "conf", workdir / "state"
    conf.mkdir()
    state.mkdir()
    http_port = free_port()
    for path in CONF.iterdir():
        text = path.read_text().replace(IMAGE_CONF, str(conf))
        if path.name == "sbcntr.conf":
            text = _replace(text, IMAGE_STATE, str(state), path.name)
            text = _replace(
                text, "HTTP_Listen               0.0.0.0", "HTTP_Listen 127.0.0.1", path.name
            )
            text = _replace(
                text, "HTTP_Port                 2020", f"HTTP_Port {http_port}", path.name
            )
        (conf / path.name).write_text(text)
    return conf, http_port


def ecs_main_file(conf: Path, forward_port: int) -> Path:
    """What FireLens generates at /fluent-bit/etc/fluent-bit.conf, including our file."""
    records = "\n".join(f"    Record {key} {value}" for key, value in ECS_METADATA.items())
    main = conf.parent / "fluent-bit.conf"
    main.write_text(
        "[INPUT]\n    Name forward\n    Listen 127.0.0.1\n"
        f"    Port {forward_port}\n\n"
        f"[FILTER]\n    Name record_modifier\n    Match *\n{records}\n\n"
        f"@INCLUDE {conf}/sbcntr.conf\n"
    )
    return main


def compose_main_file(conf: Path, forward_port: int) -> Path:
    """local.conf, as compose runs it, on a free loopback port instead of 0.0.0.0:24224."""
    main = conf / "local.conf"
    text = _replace(main.read_text(), "Listen 0.0.0.0", "Listen 127.0.0.1", main.name)
    main.write_text(_replace(text, "Port   24224", f"Port   {forward_port}", main.name))
    return main


def dry_run(main: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    fluent_bit = binary()
    assert fluent_bit is not None
    return subprocess.run(
        [fluent_bit, "--dry-run", "-c", str(main)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


@dataclass
class Router:
    """A running Fluent Bit: its forward port, monitoring port and log file."""

    process: subprocess.Popen[bytes]
    forward_port: int
    http_port: int
    log_path: Path
    state: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> dict[str, Any]:
        response = httpx.get(f"http://127.0.0.1:{self.http_port}/api/v1/metrics", timeout=5)
        return dict(response.json())

    def wait_for_log(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while not (found := re.search(pattern, self.log())):
            assert time.monotonic() < deadline, f"no {pattern!r} in the router log:\n{self.log()}"
            time.sleep(0.1)
        return found

    def stop(self, timeout: float) -> int:
        """SIGTERM, as ECS and docker stop send; the exit status."""
        return stop_process(self.process, signal.SIGTERM, timeout)


def start(workdir: Path, env: dict[str, str], *, path: str = "ecs") -> Router:
    """Start Fluent Bit on the ECS (``ecs``) or compose (``compose``) configuration."""
    fluent_bit = binary()
    assert fluent_bit is not None
    workdir.mkdir(parents=True, exist_ok=True)
    conf, http_port = copy_configuration(workdir)
    forward_port = free_port()
    main = (ecs_main_file if path == "ecs" else compose_main_file)(conf, forward_port)
    log_path = workdir / "fluent-bit.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [fluent_bit, "-c", str(main)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    router = Router(process, forward_port, http_port, log_path, workdir / "state")
    deadline = time.monotonic() + 15
    while True:
        assert process.poll() is None, f"the router exited:\n{router.log()}"
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/api/v1/uptime", timeout=1).is_success:
                return router
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"the router did not start:\n{router.log()}"
        time.sleep(0.05)
