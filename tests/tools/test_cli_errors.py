"""Every ``sbcntrctl`` subcommand fails in one line with the fix, never a traceback.

Three conditions, each for every subcommand it applies to: no region at all
(neither variable, a profile without one), an endpoint nothing listens on, and
a bad input file. The table below must name every subcommand the parser has:
a new one fails :func:`test_every_subcommand_is_in_the_table` until it is added.
The commands run in this process (``sbcntrctl.__main__.run``), which is what
the console script calls.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
from pathlib import Path

import pytest

from sbcntrctl.__main__ import build_parser, run
from sbcntrctl.infra.stacks import FROM_OUTPUTS
from sbcntrctl.release.images import IMAGES
from tests.support import free_port
from tests.tools.deploy_support import ENV

COMMIT = "0123456789abcdef0123456789abcdef01234567"
WINDOW = ("--start", "2026-01-01T00:00", "--end", "2026-01-01T01:00")

LOADTEST_RUN = ("--workers", "1", "--target", "http://alb", "--image-tag", "t", "--bucket", "b")
LOADTEST_RUN += ("--subnets", "subnet-a,subnet-b", "--security-group", "sg-1")

# Subcommands that call AWS: (name, arguments). {env} is a complete variables file,
# {digests} one record per image of COMMIT, {out} a writable path.
AWS_COMMANDS: list[tuple[str, tuple[str, ...]]] = [
    ("infra deploy", ("infra", "deploy", "qa", "--yes", "--poll", "0")),
    ("infra outputs", ("infra", "outputs", "qa")),
    ("infra delete", ("infra", "delete", "qa", "--yes", "--poll", "0")),
    ("maintenance on", ("maintenance", "on", "qa")),
    ("maintenance off", ("maintenance", "off", "qa")),
    ("maintenance status", ("maintenance", "status", "qa")),
    ("deploy render", ("deploy", "render", "frontend", "--from-stack", "qa")),
    ("deploy render-iam", ("deploy", "render-iam", "backend", "--from-stack", "qa")),
    ("deploy verify", ("deploy", "verify", "backend", "--from-stack", "qa")),
    ("deploy verify", ("deploy", "verify", "backend", "--env-file", "{env}")),
    ("deploy diff", ("deploy", "diff", "frontend", "--env-file", "{env}")),
    ("deploy migrate", ("deploy", "migrate", "backend", "--env-file", "{env}", "--wait", "1")),
    ("deploy deploy", ("deploy", "deploy", "frontend", "--env-file", "{env}", "--wait", "0")),
    ("deploy rollback", ("deploy", "rollback", "frontend", "--cluster", "sbcntr-qa")),
    ("capacity", ("capacity", "--cloudwatch", "qa", *WINDOW)),
    (
        "release push",
        ("release", "push", "backend", "--commit", COMMIT, "--registry", "r", "--out", "{out}"),
    ),
    (
        "release deploy",
        ("release", "deploy", "qa", "--commit", COMMIT, "--wait", "0", "--digests", "{digests}"),
    ),
    ("release smoke", ("release", "smoke", "qa", "--seconds", "1")),
    ("release rollback", ("release", "rollback", "qa", "backend")),
    ("drill", ("drill", "qa", "stop-backend-tasks", "--settle", "0", "--poll", "0")),
    ("shell", ("shell", "qa", "--wait", "0")),
    ("loadtest ecs run", ("loadtest", "ecs", "run", "qa", *LOADTEST_RUN)),
]

# Subcommands with an input file: (name, arguments, what the one line names).
# {junk} is a file of bytes that are neither JSON, CSV, SQLite nor KEY=value lines.
BAD_INPUTS: list[tuple[str, tuple[str, ...], str]] = [
    ("deploy render", ("deploy", "render", "frontend", "--env-file", "{junk}"), "junk"),
    ("loadtest-rows", ("loadtest-rows", "--database", "{junk}"), "not a SQLite database"),
    ("loadtest-rows", ("loadtest-rows", "--database", "{empty_db}"), "no table items"),
    ("capacity", ("capacity", "--steps", "{junk}", "--cpu", "{junk}"), "junk"),
    ("audit", ("audit", "--run-id", "r1", "--stats", "{junk}", "--log", "{junk}"), "junk"),
    (
        "release verdict",
        ("release", "verdict", "backend", "--trivy", "{junk}", "--dockle", "{junk}"),
        "junk",
    ),
    (
        "release deploy",
        ("release", "deploy", "qa", "--commit", COMMIT, "--digests", "{junk}"),
        "junk",
    ),
    (
        "xray-capture",
        ("xray-capture", "--port", "0", "--out", "{missing_dir}/segments.jsonl"),
        "missing",
    ),
    ("infra deploy", ("infra", "deploy", "qa", "--param", "{junk}"), "NAME=VALUE"),
    ("infra deploy", ("infra", "deploy", "qa", "--dir", "{missing_dir}"), "missing"),
]

# Neither AWS nor an input file that can be bad: what each does instead.
OTHERS = {
    "bench": "runs local processes only (tests/tools/test_bench.py)",
    "release spec": "prints an image's build inputs from the command line only",
    "release dockle": "runs Docker; a failure is one ReleaseError line",
}


def leaf_commands(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    """'infra deploy', 'release push'...: every command the parser takes, down to the action."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= leaf_commands(sub, f"{prefix} {name}".strip())
        elif action.dest == "action" and action.choices and prefix:
            found |= {f"{prefix} {choice}" for choice in action.choices}
    return found or {prefix}


def test_every_subcommand_is_in_the_table() -> None:
    covered = {name for name, _ in AWS_COMMANDS} | {name for name, *_ in BAD_INPUTS} | set(OTHERS)
    assert leaf_commands(build_parser()) - covered == set()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    env = tmp_path / "qa.env"
    env.write_text("".join(f"{k}={v}\n" for k, v in {**ENV, "ENV_NAME": "qa"}.items()))
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01junk, not, a, file\n{[\n")
    empty_db = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty_db).close()
    empty_db.write_bytes(empty_db.read_bytes())  # a valid database without the tables
    with sqlite3.connect(empty_db) as db:
        db.execute("CREATE TABLE other (x)")
    digests = []
    for name, image in IMAGES.items():
        record = tmp_path / f"digest-{name}.json"
        digest = "sha256:" + "ab" * 32
        record.write_text(
            json.dumps(
                {"image": name, "repository": image.repository, "commit": COMMIT, "digest": digest}
            )
        )
        digests.append(str(record))
    return {
        "env": str(env),
        "junk": str(junk),
        "empty_db": str(empty_db),
        "digests": digests[0],
        "out": str(tmp_path / "out.json"),
        "missing_dir": str(tmp_path / "missing"),
    }


def expand(args: tuple[str, ...], files: dict[str, str]) -> list[str]:
    return [arg.format(**files) for arg in args]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No region anywhere: neither variable, no profile, config files that do not exist."""
    for name in (
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "FRONTEND_URL",
        "TRACING_BACKEND",
        *FROM_OUTPUTS,
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # `shell` looks for the Session Manager plugin before any AWS call; this one is
    # never run (every case fails earlier), it only has to be on PATH.
    plugin = tmp_path / "bin" / "session-manager-plugin"
    plugin.parent.mkdir()
    plugin.write_text("#!/bin/sh\nexit 1\n")
    plugin.chmod(0o755)
    monkeypatch.setenv("PATH", f"{plugin.parent}{os.pathsep}{os.environ['PATH']}")
    return monkeypatch


def one_line_failure(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command; it must fail with exactly one line on stderr. That line."""
    try:
        status = run(argv)
    except SystemExit as exc:  # argparse refusing an argument: its usage line and message
        status = int(exc.code or 0)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert status != 0, (argv, captured.out, captured.err)
    assert "Traceback" not in captured.err
    assert len(lines) == 1 or (status == 2 and lines[0].startswith("usage:")), (argv, lines)
    return lines[-1]


@pytest.mark.parametrize(("name", "args"), AWS_COMMANDS, ids=[n for n, _ in AWS_COMMANDS])
def test_without_a_region_every_command_says_which_variables_to_set(
    name: str,
    args: tuple[str, ...],
    files: dict[str, str],
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = one_line_failure(expand(args, files), capsys)
    assert "AWS_REGION" in line, line
    assert "AWS_DEFAULT_REGION" in line, line


@pytest.mark.parametrize(("name", "args"), AWS_COMMANDS, ids=[n for n, _ in AWS_COMMANDS])
def test_an_unreachable_endpoint_is_one_line_naming_it(
    name: str,
    args: tuple[str, ...],
    files: dict[str, str],
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    clean_env.setenv("AWS_REGION", "ap-northeast-1")
    clean_env.setenv("AWS_ENDPOINT_URL", endpoint)
    line = one_line_failure(expand(args, files), capsys)
    assert endpoint in line, line
    assert "AWS_ENDPOINT_URL" in line, line


@pytest.mark.parametrize(
    ("name", "args", "named"), BAD_INPUTS, ids=[f"{n}-{w}" for n, _, w in BAD_INPUTS]
)
def test_a_bad_input_file_is_one_line(
    name: str,
    args: tuple[str, ...],
    named: str,
    files: dict[str, str],
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_env.setenv("AWS_REGION", "ap-northeast-1")
    clean_env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    line = one_line_failure(expand(args, files), capsys)
    assert named in line, line


def test_aws_region_wins_over_aws_default_region_and_the_profile(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sbcntrctl import awsenv  # noqa: PLC0415

    config = tmp_path / "config"
    config.write_text("[default]\nregion = eu-west-1\n[profile other]\nregion = us-east-2\n")
    clean_env.setenv("AWS_CONFIG_FILE", str(config))
    assert awsenv.region() == "eu-west-1"
    clean_env.setenv("AWS_PROFILE", "other")
    assert awsenv.region() == "us-east-2"
    clean_env.setenv("AWS_DEFAULT_REGION", "ap-northeast-3")
    assert awsenv.region() == "ap-northeast-3"
    clean_env.setenv("AWS_REGION", "ap-northeast-1")
    assert awsenv.region() == "ap-northeast-1"
    assert awsenv.client("ecs").meta.region_name == "ap-northeast-1"
    clean_env.setenv("AWS_PROFILE", "absent")
    clean_env.delenv("AWS_REGION")
    clean_env.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(awsenv.RegionError, match=r"absent.*fix: correct AWS_PROFILE"):
        awsenv.region()


def subparsers(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> dict[str, argparse.ArgumentParser]:
    """Every parser under ``parser`` by its command ('infra', 'release deploy'...)."""
    found = {prefix: parser} if prefix else {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= subparsers(sub, f"{prefix} {name}".strip())
    return found


def test_help_names_the_environment_rule_and_the_capacity_and_purge_options() -> None:
    helps = {name: p.format_help() for name, p in subparsers(build_parser()).items()}
    for command in ("infra", "maintenance", "release deploy", "release rollback"):
        assert "2-8 lowercase letters" in helps[command] or "the environment" in helps[command]
    assert "--purge-retained" in helps["infra"]
    assert "keep them and list them" in " ".join(helps["infra"].split())
    assert "--apply-capacity" in helps["release deploy"]
    assert "schedule that set them is removed" in " ".join(helps["release deploy"].split())
    assert "default: keep" in " ".join(helps["deploy"].split())


def test_deploy_renders_for_the_region_aws_default_region_names(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reproduction: AWS_DEFAULT_REGION set, AWS_REGION not; the task definition's
    region and the client's are the same one."""
    env = tmp_path / "qa.env"
    env.write_text("".join(f"{k}={v}\n" for k, v in ENV.items() if k != "AWS_REGION"))
    clean_env.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    assert run(["deploy", "render", "frontend", "--env-file", str(env)]) == 0
    rendered = json.loads(capsys.readouterr().out)
    regions = {
        c["logConfiguration"]["options"].get("awslogs-region")
        for c in rendered["containerDefinitions"]
        if c.get("logConfiguration", {}).get("logDriver") == "awslogs"
    }
    assert regions == {"eu-west-3"}
