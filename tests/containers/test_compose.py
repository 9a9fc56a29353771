"""docker-compose.yml as Docker Compose v2 reads it, without an engine.

Validated against the Compose Specification's JSON schema (the copy that
check-jsonschema ships and pins, ``--builtin-schema vendor.compose-spec``),
which is the schema Compose v2 checks a file against before loading it.
Compose v1 (end of life since 2023) is not supported: it rejects ``name:``
and ``configs.content``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.containers.instructions import last
from tests.support import ROOT

COMPOSE = ROOT / "docker-compose.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
# Host ports as they were before they became variables: a plain `docker compose up` is unchanged.
DEFAULT_PORTS = {"frontend": 8080, "aws": 5000, "log-router": 24224}
PUBLISHED = re.compile(r"127\.0\.0\.1:\$\{(SBCNTR_\w+_PORT):-(\d+)\}:(\d+)")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_compose_file_follows_the_compose_specification() -> None:
    result = validate(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("read_only: true", "read_onyl: true", "read_onyl"),
        ("stop_grace_period: 30s", "stop_grace_period: [30s]", "stop_grace_period"),
        ("        target: /etc/amazon/xray/cfg.yaml", "        path: /etc/cfg.yaml", "path"),
    ],
)
def test_a_mistake_is_refused_by_name(tmp_path: Path, old: str, new: str, named: str) -> None:
    broken = tmp_path / "docker-compose.yml"
    assert old in COMPOSE.read_text()
    broken.write_text(COMPOSE.read_text().replace(old, new, 1))
    result = validate(broken)
    assert result.returncode != 0
    assert named in result.stdout + result.stderr


def test_the_project_has_a_fixed_name() -> None:
    """Volumes are sbcntr_backend-data and so on, whatever the checkout's folder is called."""
    assert compose()["name"] == "sbcntr"


def test_host_ports_come_from_variables_with_the_usual_defaults() -> None:
    """A busy host port is moved with one variable, and nothing else changes."""
    services = compose()["services"]
    published = {
        name: spec["ports"] for name, spec in services.items() if spec.get("ports") is not None
    }
    assert set(published) == set(DEFAULT_PORTS)
    variables = {}
    for name, ports in published.items():
        assert len(ports) == 1, ports
        match = PUBLISHED.fullmatch(ports[0])
        assert match, f"{name}: {ports[0]} is not 127.0.0.1:${{SBCNTR_..._PORT:-default}}:port"
        variable, default, container = match.groups()
        assert int(default) == DEFAULT_PORTS[name]
        assert int(container) == DEFAULT_PORTS[name]
        variables[name] = variable
    assert len(set(variables.values())) == len(variables), variables
    # Docker's fluentd log driver reaches the router from the host: the same variable.
    router_port = f"127.0.0.1:${{{variables['log-router']}:-{DEFAULT_PORTS['log-router']}}}"
    for name, spec in services.items():
        logging = spec.get("logging", {})
        if logging.get("driver") == "fluentd":
            assert logging["options"]["fluentd-address"] == router_port, name
    for variable in variables.values():
        assert variable in COMPOSE.read_text().split("services:", 1)[0], "say it in the header"


def runs_as_root(spec: dict[str, Any]) -> bool:
    """Compose's ``user:``, else the project's Dockerfile's USER, else the image's (root)."""
    if "user" in spec:
        return str(spec["user"]).split(":")[0] in ("0", "root")
    build = spec.get("build")
    if build is not None:
        dockerfile = ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
        try:
            return last(dockerfile, "USER").split(":")[0] in ("0", "root")
        except AssertionError:  # no USER: root
            return True
    return True


def bind_mounts(spec: dict[str, Any]) -> list[str]:
    found = []
    for volume in spec.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                found.append(str(volume["source"]))
        elif str(volume).startswith((".", "/", "~")):
            found.append(str(volume))
    return found


def test_no_non_root_service_reads_a_file_of_the_checkout() -> None:
    """A checkout made under umask 077 has files only their owner can read.

    Bind mounts (and ``configs`` from a ``file:``, which Compose bind-mounts)
    keep those modes, so a container user other than root could not read
    them. Configuration for such a service is inline ``content``, which
    Compose writes into the container with mode 0444.
    """
    data = compose()
    configs = data.get("configs", {})
    non_root = {name: spec for name, spec in data["services"].items() if not runs_as_root(spec)}
    assert {"frontend", "backend", "xray-daemon"} <= set(non_root)
    for name, spec in non_root.items():
        assert bind_mounts(spec) == [], name
        for reference in spec.get("configs", []):
            source = reference["source"] if isinstance(reference, dict) else reference
            assert "content" in configs[source], f"{name}: config {source} is not inline"
            if isinstance(reference, dict) and "mode" in reference:
                # YAML 1.1 (PyYAML) reads 0444 as octal already; a string is octal digits.
                mode = reference["mode"]
                mode = mode if isinstance(mode, int) else int(mode, 8)
                assert mode & 0o444 == 0o444, reference


def test_one_shot_services_do_not_inherit_the_servers_healthcheck() -> None:
    """A service others wait for to exit runs no server: the image's HEALTHCHECK is off."""
    services = compose()["services"]
    one_shot = {
        name
        for service in services.values()
        for name, wait in (service.get("depends_on") or {}).items()
        if isinstance(wait, dict) and wait.get("condition") == "service_completed_successfully"
    }
    assert "migrate" in one_shot
    for name in sorted(one_shot):
        build = services[name].get("build") or {}
        dockerfile = ROOT / build.get("dockerfile", "Dockerfile")
        if dockerfile.exists() and any(
            line.startswith("HEALTHCHECK ") for line in dockerfile.read_text().splitlines()
        ):
            assert services[name].get("healthcheck") == {"disable": True}, name
