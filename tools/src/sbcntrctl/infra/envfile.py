"""Env files: one ``KEY=value`` per line, values shell-quoted.

The same file works with ``sbcntrctl deploy --env-file``, ``docker --env-file``
style loaders, and a shell (``set -a; . ./dev.env; set +a``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


class EnvFileError(ValueError):
    """A line of an env file is not ``KEY=value``; the message names file and line."""


def dumps(variables: Mapping[str, str], header: str = "") -> str:
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{key}={shlex.quote(value)}" for key, value in sorted(variables.items())]
    return "\n".join(lines) + "\n"


def load(path: Path) -> dict[str, str]:
    """The variables of ``path``; blank lines and ``#`` comments are skipped."""
    variables: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        try:
            if match is None:
                raise ValueError("not KEY=value")
            words = shlex.split(match.group(2))
            if len(words) > 1:
                raise ValueError("more than one word: quote the value")
        except ValueError as exc:
            msg = f"{path}:{number}: {exc}"
            raise EnvFileError(msg) from None
        variables[match.group(1)] = words[0] if words else ""
    return variables
