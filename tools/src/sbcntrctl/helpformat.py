"""How every ``sbcntrctl`` parser prints its help.

``Parser`` is the ``argparse.ArgumentParser`` every subcommand is built with
(``add_subparsers`` makes its children of the same class): descriptions and
epilogs keep their line breaks, and each option's help ends with its default
unless the text already names one. ``actions_epilog`` lists what each value of
an ACTION positional does, below the options.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Line breaks kept in descriptions and epilogs; ``(default: X)`` after each option.

    A path default inside the working directory is shown relative to it. A module
    docstring used as a description prints its reStructuredText literals
    (double backquotes) as plain text.
    """

    def _format_text(self, text: str) -> str:
        return super()._format_text(_LITERAL.sub(r"\1", text))

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default in (None, False, [], argparse.SUPPRESS)
            or "default" in text
        ):
            return text
        shown = str(default)
        if isinstance(default, Path) and default.is_relative_to(Path.cwd()):
            shown = str(default.relative_to(Path.cwd()))
        return f"{text} (default: {shown.replace('%', '%%')})"


_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` printing its help with ``HelpFormatter``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def actions_epilog(actions: Mapping[str, str]) -> str:
    """``actions:`` then one line per action: its name, then what it does."""
    width = max(map(len, actions))
    return "actions:\n" + "\n".join(f"  {name:<{width}}  {what}" for name, what in actions.items())


def describe(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand without a description its one-line summary as one, recursively.

    ``add_parser(name, help=...)`` shows the summary in the parent's list only;
    this makes ``sbcntrctl NAME --help`` open with it too.
    """
    for action in parser._actions:  # argparse exposes no public walk
        if not isinstance(action, argparse._SubParsersAction):
            continue
        summaries = {choice.dest: choice.help for choice in action._choices_actions}
        for name, sub in action.choices.items():
            if sub.description is None and summaries.get(name):
                sub.description = f"{summaries[name]}."
            describe(sub)
