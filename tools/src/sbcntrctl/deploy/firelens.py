"""Checks of the log router container against the router's configuration.

Fluent Bit replaces a ``${VAR}`` that is not set with an empty string and only
warns: without its bucket or region the router exits at start, but an empty
S3 key prefix or log group prefix goes unnoticed. So every variable that
``firelens/conf/*.conf`` reads must be set, to a non-empty value, by the
task definition or by the router image's ``ENV`` defaults (``firelens/Dockerfile``).
TLS certificate verification may be turned off only for the local emulator.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sbcntrctl.deploy.verify import Problem

FIRELENS_DIR = Path(__file__).resolve().parents[4] / "firelens"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)")
_OFF = {"off", "false", "no", "0"}


def configuration_variables(directory: Path = FIRELENS_DIR) -> set[str]:
    """Every ``${VAR}`` the router's configuration files read."""
    return {
        name
        for path in sorted((directory / "conf").glob("*.conf"))
        for line in path.read_text().splitlines()
        if not line.lstrip().startswith("#")
        for name in _VARIABLE.findall(line)
    }


def image_defaults(directory: Path = FIRELENS_DIR) -> dict[str, str]:
    """The ``ENV`` values of the router image (``NAME=value`` form, continued lines joined)."""
    text = (directory / "Dockerfile").read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            found.update(_ENV_PAIR.findall(line))
    return found


def problems(td: dict[str, Any], directory: Path = FIRELENS_DIR) -> list[Problem]:
    """Variables the router reads that the task definition leaves unset or empty."""
    needed = configuration_variables(directory)
    defaults = image_defaults(directory)
    found = []
    for container in td.get("containerDefinitions", []):
        if "firelensConfiguration" not in container:
            continue
        where = f"containerDefinitions[{container.get('name')}].environment"
        env = {
            **defaults,
            **{
                v.get("name", ""): str(v.get("value", "")) for v in container.get("environment", [])
            },
        }
        found += [
            Problem(
                f"{where}.{name}",
                f"the router configuration reads ${{{name}}}: set it (unset, it would be empty)",
            )
            for name in sorted(needed)
            if not env.get(name)
        ]
        if env.get("OUTPUT_TLS_VERIFY", "On").lower() in _OFF:
            found.append(
                Problem(
                    f"{where}.OUTPUT_TLS_VERIFY",
                    "certificate verification is turned off only for the local emulator",
                )
            )
    return found
