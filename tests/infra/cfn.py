"""Reading the templates in tests: parse, and resolve the intrinsic functions they use.

``resolve`` substitutes ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::ImportValue``,
``Fn::Join`` and ``Fn::If`` from a table of names (parameters, pseudo parameters,
resource ids and attributes, export names, ``Condition:<name>`` as a bool), so a
policy or a lifecycle policy in a template can be compared with the JSON it becomes in AWS.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from sbcntrctl.infra.stacks import BY_KEY

_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


def template(key: str) -> dict[str, Any]:
    """A fresh, mutable copy of ``infra/<key>.yml``, parsed."""
    return copy.deepcopy(_as_plain(BY_KEY[key].template()))


def _as_plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _as_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def resources(tpl: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """Resources of one type, by logical id."""
    return {k: v for k, v in tpl["Resources"].items() if v["Type"] == kind}


def defaults(tpl: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(p["Default"]) for k, p in tpl.get("Parameters", {}).items() if "Default" in p}


class UnknownNameError(KeyError):
    """A name the table does not have."""


def resolve(value: Any, names: Mapping[str, Any]) -> Any:
    """``value`` with every intrinsic function replaced from ``names``."""
    if isinstance(value, list):
        return [resolve(v, names) for v in value]
    if not isinstance(value, Mapping):
        return value
    if len(value) == 1:
        (function, argument), *_ = value.items()
        if function == "Ref":
            return _lookup(names, argument)
        if function == "Fn::GetAtt":
            parts = argument if isinstance(argument, list) else argument.split(".", 1)
            return _lookup(names, ".".join(parts))
        if function == "Fn::ImportValue":
            return _lookup(names, "import:" + resolve(argument, names))
        if function == "Fn::If":
            condition, when_true, when_false = argument
            chosen = when_true if _lookup(names, f"Condition:{condition}") else when_false
            return resolve(chosen, names)
        if function == "Fn::Join":
            separator, items = argument
            return separator.join(str(resolve(i, names)) for i in resolve(items, names))
        if function == "Fn::If":
            condition, if_true, if_false = argument
            return resolve(if_true if _lookup(names, f"Condition:{condition}") else if_false, names)
        if function == "Fn::Sub":
            text, local = (argument, {}) if isinstance(argument, str) else argument
            table = {**names, **{k: resolve(v, names) for k, v in local.items()}}
            return _SUB.sub(lambda m: str(_lookup(table, m.group(1))), text)
    return {k: resolve(v, names) for k, v in value.items()}


def _lookup(names: Mapping[str, Any], name: str) -> Any:
    if name not in names:
        raise UnknownNameError(name)
    return names[name]
