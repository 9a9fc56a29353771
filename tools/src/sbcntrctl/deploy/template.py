"""Rendering the templates as ecspresso does (kayac/go-config's functions).

Supported, with go-config's semantics:

- ``{{ must_env `NAME` }}``: the value of NAME, even when set to the empty
  string; an unset NAME is an error (all of them are named at once).
- ``{{ env `NAME` `default` }}``: each argument in turn is looked up as a
  variable and the first non-empty value wins; when none is set the last
  argument itself is the value. So a set-but-empty NAME falls back on the
  default, as with ecspresso.
- ``... | json_escape``: the value escaped for a JSON string (Go's
  ``json.Marshal`` without the quotes, ``<``, ``>``, ``&`` as ``\\u003c``...).
- ``{{ if env `NAME` `` }}...{{ end }}``: Go's ``if`` on that value: the text
  between is kept when NAME is set and not empty, dropped otherwise (an
  optional list entry, such as a third subnet). No ``else``, no nesting.
- ``{{ if eq (env `NAME` `default`) `A` `B` }}...{{ end }}``: Go's ``eq``, true
  when the first argument equals any of the others: the text is kept when the
  value (default applied) is one of them (a part of the definition that only
  some deployment strategies take).

Any other function (ecspresso's ``ssm``, ``secretsmanager_arn``, ``tfstate``,
``cfn_output``..., Go's ``printf``...) is refused, naming it. A value that
holds a quote, a backslash or a control character, substituted without
``json_escape``, is refused too: ecspresso would render broken or silently
different JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_IF = re.compile(r"\{\{\s*if\s(.*?)\}\}(.*?)\{\{\s*end\s*\}\}", re.S)
_EQ = re.compile(r"\s*eq\s+\((.*?)\)((?:\s+(?:`[^`]*`|\"(?:[^\"\\]|\\.)*\"))+)\s*$", re.S)
_LITERAL = re.compile(r"`([^`]*)`|(\"(?:[^\"\\]|\\.)*\")")
_BLOCK = re.compile(r"\{\{\s*(if|else|end|range|with)\b")
_TOKEN = re.compile(r"\s*(`[^`]*`|\"(?:[^\"\\]|\\.)*\"|\||[A-Za-z_][A-Za-z0-9_]*|\S+)")
_PIPE = "|"
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')
# ecspresso's other template functions: plugins that read the account.
_PLUGIN_FUNCTIONS = {
    "ssm": "ssm",
    "secretsmanager_arn": "secretsmanager",
    "secretsmanager_arnf": "secretsmanager",
    "tfstate": "tfstate",
    "tfstatef": "tfstate",
    "cfn_output": "cloudformation",
    "cfn_export": "cloudformation",
}


class TemplateError(ValueError):
    """A template, or a value put into it, cannot be rendered; the message says where."""


class MissingVariables(TemplateError):  # noqa: N818 - names what is wrong
    """Variables a template needs (``must_env``) that the environment does not set."""

    def __init__(self, path: Path, names: list[str]) -> None:
        super().__init__(f"{path}: set {', '.join(names)} (must_env)")
        self.names = names


@dataclass(frozen=True)
class _Substitution:
    start: int
    end: int
    variable: str


def json_escape(value: str) -> str:
    """go-config's ``json_escape``: Go's json.Marshal of a string, quotes removed."""
    escaped = json.dumps(value, ensure_ascii=False)[1:-1]
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        escaped = escaped.replace(char, code)
    return escaped.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def go_env(env: Mapping[str, str], keys: list[str]) -> str:
    """go-config's ``env``: the first non-empty variable among ``keys``, else the last key."""
    value = ""
    for key in keys:
        value = env.get(key, "")
        if value:
            return value
        value = key
    return value


def _parse(action: str, source: Path, line: int) -> tuple[str, list[str], bool]:
    """``(function, arguments, json_escaped)`` of one ``{{ ... }}`` body."""
    tokens = [t for t in _TOKEN.findall(action) if t.strip()]
    where = f"{source}:{line}: {{{{{action}}}}}"
    stages: list[list[str]] = [[]]
    for token in tokens:
        if token == _PIPE:
            stages.append([])
        else:
            stages[-1].append(token)
    function = stages[0][0] if stages[0] else ""
    if function in _PLUGIN_FUNCTIONS:
        msg = (
            f"{where}: {function} needs ecspresso's {_PLUGIN_FUNCTIONS[function]} plugin, "
            "which sbcntrctl does not run: put the value in an environment variable "
            "and use env/must_env"
        )
        raise TemplateError(msg)
    if function not in ("env", "must_env"):
        msg = f"{where}: unsupported expression (sbcntrctl renders env, must_env, json_escape)"
        raise TemplateError(msg)
    arguments = []
    for token in stages[0][1:]:
        if token.startswith("`"):
            arguments.append(token[1:-1])
        elif token.startswith('"'):
            arguments.append(json.loads(token))
        else:
            msg = f"{where}: arguments must be quoted strings, found {token}"
            raise TemplateError(msg)
    if not arguments or (function == "must_env" and len(arguments) != 1):
        msg = f"{where}: {function} takes {'one name' if function == 'must_env' else 'names'}"
        raise TemplateError(msg)
    pipes = [" ".join(stage) for stage in stages[1:]]
    if any(p != "json_escape" for p in pipes) or len(pipes) > 1:
        msg = f"{where}: only `| json_escape` may follow {function}"
        raise TemplateError(msg)
    return function, arguments, bool(pipes)


def _conditionals(text: str, env: Mapping[str, str], source: Path) -> str:
    """``text`` with each ``{{ if env ... }}...{{ end }}`` kept or dropped.

    A dropped block leaves its newlines, so later errors name the right line.
    """

    def keep_or_drop(match: re.Match[str]) -> str:
        line = text.count("\n", 0, match.start()) + 1
        condition, body = match.group(1), match.group(2)
        equal = _EQ.match(condition)
        function, arguments, escaped = _parse(equal.group(1) if equal else condition, source, line)
        if function != "env" or escaped or _BLOCK.search(body):
            msg = (
                f"{source}:{line}: only {{{{ if env `NAME` `` }}}} or "
                f"{{{{ if eq (env `NAME` `default`) `VALUE`... }}}}...{{{{ end }}}}, unnested"
            )
            raise TemplateError(msg)
        value = go_env(env, arguments)
        if equal:
            values = [
                json.loads(quoted) if quoted else backquoted
                for backquoted, quoted in _LITERAL.findall(equal.group(2))
            ]
            keep = value in values
        else:
            keep = bool(value)
        return body if keep else "\n" * body.count("\n")

    rendered = _IF.sub(keep_or_drop, text)
    stray = _BLOCK.search(rendered)
    if stray:
        line = rendered.count("\n", 0, stray.start()) + 1
        msg = f"{source}:{line}: {stray.group(1)} without its if/end (sbcntrctl renders if...end)"
        raise TemplateError(msg)
    return rendered


def _render(text: str, env: Mapping[str, str], source: Path) -> tuple[str, list[_Substitution]]:
    text = _conditionals(text, env, source)
    missing: list[str] = []
    unescaped: list[str] = []
    out: list[str] = []
    substitutions: list[_Substitution] = []
    position = 0
    length = 0
    for match in _ACTION.finditer(text):
        literal = text[position : match.start()]
        out.append(literal)
        length += len(literal)
        position = match.end()
        line = text.count("\n", 0, match.start()) + 1
        function, arguments, escaped = _parse(match.group(1), source, line)
        name = arguments[0]
        if function == "must_env":
            if name not in env:
                missing += [] if name in missing else [name]
                continue
            value = env[name]
        else:
            value = go_env(env, arguments)
        if escaped:
            value = json_escape(value)
        elif _NEEDS_ESCAPE.search(value) and name not in unescaped:
            unescaped.append(name)
        out.append(value)
        substitutions.append(_Substitution(length, length + len(value), name))
        length += len(value)
    out.append(text[position:])
    if missing:
        raise MissingVariables(source, missing)
    if unescaped:
        names = ", ".join(unescaped)
        msg = (
            f"{source}: the value of {names} holds a quote, a backslash or a control character: "
            f"pipe it through json_escape ({{{{ env `{unescaped[0]}` | json_escape }}}})"
        )
        raise TemplateError(msg)
    return "".join(out), substitutions


def render_text(text: str, env: Mapping[str, str], source: Path) -> str:
    """Render ``text`` (read from ``source``, named in errors) with ``env``."""
    return _render(text, env, source)[0]


def render_json(path: Path, env: Mapping[str, str]) -> Any:
    """Render ``path`` and parse it as JSON; a parse error names the variable at fault."""
    try:
        text = path.read_text()
    except OSError as exc:
        msg = f"{path}: cannot read the template ({exc.strerror}): check --dir"
        raise TemplateError(msg) from exc
    rendered, substitutions = _render(text, env, path)
    try:
        return json.loads(rendered)
    except json.JSONDecodeError as exc:
        line_start = rendered.rfind("\n", 0, exc.pos) + 1
        near = [s for s in substitutions if line_start <= s.end and s.start <= exc.pos + 1]
        blame = f": check the value of {near[-1].variable}" if near else ""
        at = f"line {exc.lineno} column {exc.colno}"
        msg = f"{path}: rendered JSON is invalid at {at} ({exc.msg}){blame}"
        raise TemplateError(msg) from exc
