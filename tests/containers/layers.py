"""Which image layers a build would make again: BuildKit's cache rules applied to a Dockerfile.

BuildKit reuses a layer when its instruction, its inputs and every layer
under it are unchanged, so a layer's identity is a chain: a key made of the
key below it and the layer's own inputs. The inputs modelled here:

- ``RUN``: the command, the working directory and user, and every ``ENV`` and
  build argument in scope. Build arguments reach ``RUN`` as environment
  variables, so "all RUN instructions following an ARG instruction use the
  ARG variable implicitly (as an environment variable), thus can cause a
  cache miss" (Dockerfile reference, ARG, "Impact on build caching").
- ``COPY``/``ADD``: the instruction with its variables expanded, what it
  copies from (another stage's final key, an image, or the files of the build
  context under its sources: the caller names which context files changed).
- ``WORKDIR``: the path, with variables expanded.

``ENV``, ``ARG``, ``LABEL``, ``USER``, ``EXPOSE``, ``CMD`` and the other
metadata instructions make no layer; they change only the image
configuration (and, for ``ENV``/``ARG``/``USER``, the inputs of later
``RUN`` instructions). Good enough to tell which layers a new commit id or a
changed source file rebuilds; not a Dockerfile parser for anything else.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import shlex
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.containers.instructions import instructions

LAYER_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD", "WORKDIR"})


@dataclass(frozen=True)
class Layer:
    stage: str
    instruction: str
    arguments: str
    key: str


@dataclass
class _State:
    key: str
    env: dict[str, str]
    args: dict[str, str]
    workdir: str = "/"
    user: str = "root"


def _hash(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _expand(text: str, values: Mapping[str, str]) -> str:
    return re.sub(
        r"\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)",
        lambda m: values.get(m.group(1) or m.group(3), m.group(2) or ""),
        text,
    )


def _copy_sources(arguments: str) -> tuple[dict[str, str], list[str]]:
    """(flags, sources) of a COPY/ADD: ``--from=x`` style flags, then sources and destination."""
    words = shlex.split(arguments)
    flags = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    return flags, words[:-1]


def _changed_under(sources: list[str], changed: Collection[str]) -> list[str]:
    """The changed context files a COPY of ``sources`` would copy."""
    hits = set()
    for source in sources:
        root = source.removeprefix("./").strip("/")
        for path in changed:
            if root in ("", ".") or fnmatch.fnmatch(path, root) or path.startswith(root + "/"):
                hits.add(path)
    return sorted(hits)


def layers(
    path: Path,
    build_args: Mapping[str, str] | None = None,
    changed: Collection[str] = (),
) -> dict[str, list[Layer]]:
    """Per stage (by name, the unnamed ones by index), the layers and their cache keys.

    ``build_args`` are the ``--build-arg`` values; ``changed`` the build
    context files (paths relative to the context) that differ from another build.
    """
    given = dict(build_args or {})
    stages: dict[str, list[Layer]] = {}
    finals: dict[str, _State] = {}
    state: _State | None = None
    name = ""
    for instruction, arguments in instructions(path):
        if instruction == "FROM":
            if state is not None:
                finals[name] = state
            match = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", arguments, re.IGNORECASE)
            assert match is not None, arguments
            image, name = match.group(1), match.group(2) or str(len(stages))
            if image in finals:
                parent = finals[image]
                state = _State(parent.key, dict(parent.env), {}, parent.workdir, parent.user)
            else:
                state = _State(_hash("FROM", image), {}, {})
            stages[name] = []
            continue
        assert state is not None, f"{path.name}: {instruction} before FROM"
        scope = {**state.args, **state.env}
        if instruction == "ARG":
            arg, _, default = arguments.partition("=")
            state.args[arg] = given.get(arg, default.strip('"'))
        elif instruction == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                state.env[key] = _expand(value, {**state.args, **state.env})
        elif instruction == "USER":
            state.user = _expand(arguments, scope)
        if instruction not in LAYER_INSTRUCTIONS:
            continue
        if instruction == "RUN":
            state.key = _hash(
                state.key, arguments, sorted(scope.items()), state.workdir, state.user
            )
        elif instruction == "WORKDIR":
            state.workdir = _expand(arguments, scope)
            state.key = _hash(state.key, "WORKDIR", state.workdir)
        else:
            expanded = _expand(arguments, scope)
            flags, sources = _copy_sources(expanded)
            if "from" in flags:
                origin = finals[flags["from"]].key if flags["from"] in finals else flags["from"]
            else:
                origin = _hash("context", _changed_under(sources, changed))
            state.key = _hash(state.key, instruction, expanded, origin)
        stages[name].append(Layer(name, instruction, arguments, state.key))
    return stages


def final_layers(
    path: Path, build_args: Mapping[str, str] | None = None, changed: Collection[str] = ()
) -> list[Layer]:
    """The layers of the image the Dockerfile builds (its last stage)."""
    return list(layers(path, build_args, changed).values())[-1]
