"""Image layers stay the same across commits unless what they hold changed.

A registry receives only the layers it does not have; a layer rebuilt by the
cache rules is pushed again even when its files are the same. Checked from
the Dockerfiles' instruction order with BuildKit's cache rules
(tests/containers/layers.py), so no engine is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sbcntrctl.release.images import IMAGES
from tests.containers.instructions import instructions
from tests.containers.layers import Layer, final_layers, layers
from tests.support import ROOT

SERVICES = ["backend", "frontend"]
# Every image the release builds: each takes the commit as GIT_COMMIT.
DOCKERFILES = [ROOT / image.dockerfile for image in IMAGES.values()]


def keys(stages: dict[str, list[Layer]]) -> dict[str, list[str]]:
    return {name: [layer.key for layer in found] for name, found in stages.items()}


def declared_args(path: Path) -> list[str]:
    return [args.partition("=")[0] for name, args in instructions(path) if name == "ARG"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_build_arguments_change_no_layer(path: Path) -> None:
    """A new commit id (or any other build argument) changes the image configuration only."""
    args = declared_args(path)
    assert "GIT_COMMIT" in args
    one = layers(path, {arg: f"first-{arg}" for arg in args})
    other = layers(path, {arg: f"second-{arg}" for arg in args})
    assert keys(one) == keys(other)
    assert final_layers(path), "an image with no layer of its own"


@pytest.mark.parametrize("service", SERVICES)
def test_a_code_change_rebuilds_only_the_project_layer(service: str) -> None:
    """Changed service or servicekit code leaves the dependency layers as they were."""
    path = ROOT / f"Dockerfile.{service}"
    before = final_layers(path)
    for changed in (f"{service}/src/{service}/app.py", "servicekit/src/servicekit/runner.py"):
        after = final_layers(path, changed=[changed])
        pairs = enumerate(zip(before, after, strict=True))
        first_changed = next(i for i, (a, b) in pairs if a.key != b.key)
        rebuilt = after[first_changed]
        assert (rebuilt.instruction, rebuilt.arguments) == ("COPY", "--from=build /project/ /")
        kept = [(layer.instruction, layer.arguments) for layer in before[:first_changed]]
        assert ("COPY", "--from=deps /app/.venv /app/.venv") in kept, kept
        # Nothing of the dependency stage is rebuilt for a code change.
        assert keys(layers(path))["deps"] == keys(layers(path, changed=[changed]))["deps"]


@pytest.mark.parametrize("service", SERVICES)
def test_a_lock_change_rebuilds_the_dependencies(service: str) -> None:
    """The other side: new locked versions do reach the image."""
    path = ROOT / f"Dockerfile.{service}"
    before = final_layers(path)
    after = final_layers(path, changed=["uv.lock"])
    changed = [b for a, b in zip(before, after, strict=True) if a.key != b.key]
    assert ("COPY", "--from=deps /app/.venv /app/.venv") in [
        (layer.instruction, layer.arguments) for layer in changed
    ]


# --- the model itself tells a bad order from a good one


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    return path


def test_model_sees_an_argument_declared_before_a_run(tmp_path: Path) -> None:
    early = write(
        tmp_path,
        "FROM python:3.11.14-slim AS base\n"
        "ARG GIT_COMMIT=unknown\n"
        "RUN useradd app\n"
        "COPY app /app\n",
    )
    one = final_layers(early, {"GIT_COMMIT": "a"})
    other = final_layers(early, {"GIT_COMMIT": "b"})
    assert [a.key != b.key for a, b in zip(one, other, strict=True)] == [True, True]


def test_model_sees_an_argument_a_copy_names(tmp_path: Path) -> None:
    named = write(
        tmp_path,
        "FROM python:3.11.14-slim\nARG GIT_COMMIT=unknown\nCOPY app /app/${GIT_COMMIT}\n",
    )
    assert final_layers(named, {"GIT_COMMIT": "a"}) != final_layers(named, {"GIT_COMMIT": "b"})


def test_model_keeps_layers_when_the_argument_comes_last(tmp_path: Path) -> None:
    late = write(
        tmp_path,
        "FROM python:3.11.14-slim\n"
        "RUN useradd app\n"
        "COPY app /app\n"
        "ARG GIT_COMMIT=unknown\n"
        'LABEL revision="${GIT_COMMIT}"\n'
        "ENV GIT_COMMIT=${GIT_COMMIT}\n",
    )
    assert final_layers(late, {"GIT_COMMIT": "a"}) == final_layers(late, {"GIT_COMMIT": "b"})


def test_model_follows_changes_through_stages(tmp_path: Path) -> None:
    staged = write(
        tmp_path,
        "FROM python:3.11.14-slim AS build\n"
        "COPY src /src\n"
        "RUN make\n"
        "FROM python:3.11.14-slim\n"
        "RUN useradd app\n"
        "COPY --from=build /out /app\n",
    )
    before = final_layers(staged)
    after = final_layers(staged, changed=["src/main.c"])
    assert [a.key != b.key for a, b in zip(before, after, strict=True)] == [False, True]
    assert final_layers(staged, changed=["docs/index.md"]) == before
