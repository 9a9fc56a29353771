"""``sbcntrctl --help`` teaches the tool: every subcommand, action and option explained.

The walk is generic: a subcommand or option added anywhere in the tree is checked
without touching this file.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from sbcntrctl.__main__ import build_parser
from sbcntrctl.helpformat import Parser, actions_epilog, describe

Path_ = tuple[str, ...]


def walk(parser: argparse.ArgumentParser, path: Path_ = ()) -> list[tuple[Path_, str | None]]:
    """Every parser below ``parser``: its words after ``sbcntrctl`` and its summary line."""
    found: list[tuple[Path_, str | None]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found.append(((*path, name), summaries.get(name)))
                found.extend(walk(sub, (*path, name)))
    return found


def parser_at(root: argparse.ArgumentParser, path: Path_) -> argparse.ArgumentParser:
    parser = root
    for word in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


def help_problems(parser: argparse.ArgumentParser) -> list[str]:
    """What a reader of ``parser``'s --help would miss: arguments without help, hidden defaults."""
    problems = []
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        if action.help == argparse.SUPPRESS:
            continue  # deliberately hidden (test-only knobs)
        if not action.help:
            problems.append(f"{name}: no help text")
            continue
        meaningful = action.default not in (None, False, [], "")
        shown = formatter._expand_help(action)
        if (
            action.option_strings
            and meaningful
            and "default" not in shown
            and f"({action.default})" not in shown  # "(%(default)s)"
        ):
            problems.append(f"{name}: default {action.default!r} not shown")
    if "``" in parser.format_help():
        problems.append("literal ``...`` in the help text")
    return problems


ROOT_PARSER = build_parser()
PARSERS = [((), "top level"), *walk(ROOT_PARSER)]


@pytest.mark.parametrize(("path", "summary"), PARSERS, ids=[" ".join(p) or "-" for p, _ in PARSERS])
def test_every_help_explains_every_argument(
    path: Path_, summary: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*path, "--help"])
    assert exited.value.code == 0
    printed = capsys.readouterr().out
    parser = parser_at(ROOT_PARSER, path)
    assert summary, f"sbcntrctl {' '.join(path)}: no one-line summary in its parent's list"
    assert parser.description, f"sbcntrctl {' '.join(path)}: --help opens with no description"
    assert "``" not in printed  # reStructuredText literals print as plain text
    assert re.sub(r"``(.+?)``", r"\1", parser.description.splitlines()[0]) in printed
    assert help_problems(parser) == []
    # Each value of an ACTION positional is explained below the options.
    for action in parser._actions:
        if (
            action.dest == "action"
            and action.choices
            and not isinstance(action, argparse._SubParsersAction)
        ):
            assert parser.epilog is not None
            for choice in action.choices:
                assert f"\n  {choice} " in f"\n{parser.epilog}", f"action {choice} unexplained"


def test_the_checker_catches_an_option_without_help_or_default() -> None:
    parser = Parser(prog="x", description="d")
    parser.add_argument("--quiet-one", type=int)
    parser.add_argument("--count", type=int, default=5, help="how many")
    problems = help_problems(parser)
    assert problems == ["--quiet-one: no help text"]
    # Parser shows the default by itself; plain argparse would not.
    plain = argparse.ArgumentParser(prog="x")
    plain.add_argument("--count", type=int, default=5, help="how many")
    assert help_problems(plain) == ["--count: default 5 not shown"]
    assert "how many (default: 5)" in " ".join(parser.format_help().split())


def test_describe_gives_subcommands_their_summary_and_epilogs_keep_lines() -> None:
    parser = Parser(prog="x")
    commands = parser.add_subparsers()
    commands.add_parser("go", help="go somewhere")
    describe(parser)
    assert parser_at(parser, ("go",)).description == "go somewhere."
    epilog = actions_epilog({"on": "switch it on", "status": "say whether it is on"})
    assert epilog == "actions:\n  on      switch it on\n  status  say whether it is on"


def test_top_level_help_lists_the_workflow_in_order() -> None:
    """The real command: ``sbcntrctl --help`` exits 0 and names the steps in order."""
    done = subprocess.run(
        [sys.executable, "-m", "sbcntrctl", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "``" not in done.stdout
    workflow = done.stdout[done.stdout.index("workflow") :]
    steps = ["infra deploy", "release", "deploy deploy", "locust -f loadtest/", "capacity --steps"]
    positions = [workflow.index(step) for step in steps]
    assert positions == sorted(positions)
    for command in ("bench", "deploy", "infra", "audit", "capacity", "release"):
        assert f"\n    {command} " in done.stdout
