"""A small reader of the Dockerfile instructions the container tests check."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined: list[str] = []
    buffer = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        joined.append(buffer + line)
        buffer = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]


def stages(path: Path) -> list[Stage]:
    found: list[Stage] = []
    for instruction, args in instructions(path):
        if instruction == "FROM":
            match = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            assert match is not None
            found.append(Stage(match.group(1), match.group(2)))
        else:
            found[-1].instructions.append((instruction, args))
    return found


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction; fails on shell form."""
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form: {args}"
    return [str(part) for part in value]


def final_env(path: Path) -> dict[str, str]:
    """ENV of the final stage, with ``$VAR`` and ``${VAR}`` expanded where known."""
    env: dict[str, str] = {}
    for instruction, args in stages(path)[-1].instructions:
        if instruction != "ENV":
            continue
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = re.sub(
                r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), f"${m.group(1)}"), value
            )
    return env


def last(path: Path, instruction: str) -> str:
    values = [args for name, args in stages(path)[-1].instructions if name == instruction]
    assert values, f"{path.name} has no {instruction} in its final stage"
    return values[-1]
