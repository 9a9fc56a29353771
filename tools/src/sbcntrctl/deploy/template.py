"""Rendering ecspresso-style templates: ``must_env`` and ``env`` with a default."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_CALL = re.compile(r"\{\{\s*(must_env|env)\s+`([A-Za-z_][A-Za-z0-9_]*)`(?:\s+`([^`]*)`)?\s*\}\}")


class MissingVariables(Exception):  # noqa: N818 - names what is wrong
    """Variables a template needs (``must_env``) that the environment does not set."""

    def __init__(self, path: Path, names: list[str]) -> None:
        super().__init__(f"{path}: set {', '.join(names)} (must_env)")
        self.names = names


def render_text(text: str, env: Mapping[str, str], source: Path) -> str:
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        function, name, default = match.groups()
        if name in env:
            return env[name]
        if function == "must_env":
            if name not in missing:
                missing.append(name)
            return ""
        return default or ""

    rendered = _CALL.sub(substitute, text)
    if missing:
        raise MissingVariables(source, missing)
    leftover = re.search(r"\{\{.*?\}\}", rendered)
    if leftover:
        msg = f"{source}: unsupported template expression {leftover.group(0)}"
        raise ValueError(msg)
    return rendered


def render_json(path: Path, env: Mapping[str, str]) -> Any:
    """Render ``path`` and parse it as JSON."""
    return json.loads(render_text(path.read_text(), env, path))


def variables(path: Path) -> dict[str, str | None]:
    """Variables a template reads: name -> default (None for ``must_env``)."""
    found: dict[str, str | None] = {}
    for function, name, default in _CALL.findall(path.read_text()):
        found[name] = None if function == "must_env" else default
    return found
