"""Env files written by `infra outputs` and read by `deploy --env-file`."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest

from sbcntrctl.deploy import sources
from sbcntrctl.infra import envfile


def test_values_survive_the_round_trip_and_a_shell(tmp_path: Path) -> None:
    values = {
        "DATABASE_URL": "postgresql://app@db.example:5432/sbcntr",
        "CLOUDWATCH_LEVELS": "^(warning|error)$",
        "ODD": 'it\'s $HOME `x` "q"',
        "EMPTY": "",
    }
    path = tmp_path / "dev.env"
    path.write_text(envfile.dumps(values, "a header\nof two lines"))
    assert envfile.load(path) == values
    shell = subprocess.run(
        ["bash", "-c", f'set -a; . "{path}"; printf %s "$ODD"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout == values["ODD"]


@pytest.mark.parametrize(
    ("line", "problem"),
    [("NOT A LINE", "not KEY=value"), ("A=two words", "more than one word"), ("B='open", "")],
)
def test_a_bad_line_is_named_with_file_and_number(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.env"
    path.write_text(f"# comment\nOK=1\n{line}\n")
    with pytest.raises(envfile.EnvFileError, match=rf"bad\.env:3: .*{problem}"):
        envfile.load(path)


def test_the_process_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dev.env"
    path.write_text(envfile.dumps({"IMAGE_TAG": "from-file", "ECS_CLUSTER": "sbcntr-dev"}))
    args = argparse.Namespace(env_file=path, from_stack=None)
    merged = sources.environment(args, {"IMAGE_TAG": "dev-0a1b2c3"})
    assert merged == {"IMAGE_TAG": "dev-0a1b2c3", "ECS_CLUSTER": "sbcntr-dev"}
    missing = argparse.Namespace(env_file=tmp_path / "absent.env", from_stack=None)
    with pytest.raises(sources.SourceError, match=r"absent\.env"):
        sources.environment(missing, {})
