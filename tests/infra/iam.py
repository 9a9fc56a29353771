"""A small IAM policy evaluator for the tests: identity and trust policies, as the
IAM User Guide documents them ("Policy evaluation logic", "IAM JSON policy
elements: Condition operators").

- An explicit Deny whose action, resource and condition match wins; otherwise an
  Allow that matches; otherwise the implicit deny.
- ``Action`` and ``Resource`` match with IAM's wildcards: ``*`` any run of
  characters (``:`` and ``/`` included), ``?`` one character, everything else
  literal. A statement without ``Resource`` (a trust policy) matches any.
- Conditions: every operator of a statement, and every key of an operator, must
  hold (AND); the values listed for one key are alternatives (OR). A key the
  request context lacks makes a positive operator false and a negated one
  (``...Not...``) true. Supported: ``StringEquals``, ``StringLike``,
  ``StringNotEquals``, ``StringNotLike``, ``ArnEquals``, ``ArnLike``,
  ``ArnNotEquals``, ``ArnNotLike``, ``Bool``; anything else fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

Context = Mapping[str, str]

# Operators whose values are patterns (ArnEquals matches wildcards like ArnLike).
_PATTERN = {"StringLike", "StringNotLike", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike"}
_EXACT = {"StringEquals", "StringNotEquals", "Bool"}


def arn_pattern(resource: str) -> re.Pattern[str]:
    """IAM's ARN and action matching: ``*`` any run of characters (``:`` and ``/``
    included), ``?`` one character, everything else literal and case-sensitive
    (IAM User Guide, "IAM JSON policy elements: Resource", wildcards in ARNs)."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in resource)
    return re.compile("".join(parts))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def condition_holds(condition: Mapping[str, Any], context: Context) -> bool:
    """Whether every operator and key of ``condition`` holds for ``context``."""
    for operator, entries in condition.items():
        if operator not in _PATTERN | _EXACT:
            msg = f"condition operator {operator} is not modelled by tests/infra/iam.py"
            raise NotImplementedError(msg)
        negated = "Not" in operator
        for key, expected in entries.items():
            actual = context.get(key)
            if actual is None:
                if not negated:
                    return False
                continue
            values = [str(v) for v in as_list(expected)]
            if operator in _PATTERN:
                matched = any(arn_pattern(v).fullmatch(actual) for v in values)
            elif operator == "Bool":
                matched = any(v.lower() == actual.lower() for v in values)
            else:
                matched = actual in values
            if matched == negated:
                return False
    return True


def _matches(st: Mapping[str, Any], action: str, resource: str, context: Context) -> bool:
    if not any(arn_pattern(a).fullmatch(action) for a in as_list(st["Action"])):
        return False
    if "Resource" in st and not any(
        arn_pattern(r).fullmatch(resource) for r in as_list(st["Resource"])
    ):
        return False
    return condition_holds(st.get("Condition", {}), context)


def allows(
    policy: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    action: str,
    resource: str,
    context: Context | None = None,
) -> bool:
    """Whether ``policy`` (or the union of several) allows ``action`` on ``resource``
    for a request with ``context``: a matching Allow and no matching Deny."""
    policies = [policy] if isinstance(policy, Mapping) else list(policy)
    allowed = False
    for doc in policies:
        for st in as_list(doc["Statement"]):
            if _matches(st, action, resource, context or {}):
                if st["Effect"] == "Deny":
                    return False
                allowed = True
    return allowed


def can_assume(trust: Mapping[str, Any], federated: str, claims: Context) -> bool:
    """Whether a web identity token with ``claims`` from the provider ``federated``
    may call ``sts:AssumeRoleWithWebIdentity`` under the trust policy ``trust``."""
    for st in as_list(trust["Statement"]):
        principals = as_list(st.get("Principal", {}).get("Federated", []))
        deny = federated in principals and st["Effect"] == "Deny"
        if deny and _matches(st, "sts:AssumeRoleWithWebIdentity", "*", claims):
            return False
    return any(
        federated in as_list(st.get("Principal", {}).get("Federated", []))
        and st["Effect"] == "Allow"
        and _matches(st, "sts:AssumeRoleWithWebIdentity", "*", claims)
        for st in as_list(trust["Statement"])
    )
