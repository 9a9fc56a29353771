"""X-Ray local sampling rules (the ``sampling-rules.json`` file), without the X-Ray SDK.

The OpenTelemetry path (:mod:`servicekit.tracing_otel`) decides with the same
file and the same semantics as the X-Ray SDK's ``LocalSampler`` on the X-Ray
path, so switching ``TRACING_BACKEND`` changes no sampling decision
(``tests/servicekit/test_sampling_rules.py`` compares the two on the same
requests). The format is AWS's, documented in the X-Ray developer guide
("Configuring sampling rules", local sampling rules, versions 1 and 2):

* rules are tried in order; the first whose ``host`` (``service_name`` in
  version 1), ``http_method`` and ``url_path`` all match applies, else the
  ``default`` rule;
* patterns match case-insensitively, ``*`` any run of characters, ``?`` one
  character; a request fact that is missing matches any pattern;
* a rule traces its first ``fixed_target`` requests each second (its
  reservoir), then a ``rate`` fraction of the others.

Which rule applies to a (host, method, path) is remembered for up to
:data:`MATCH_CACHE_SIZE` combinations (the oldest forgotten first): a request
costs one dictionary look-up, not a wildcard match per rule.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

SUPPORTED_VERSIONS = (1, 2)
MATCH_CACHE_SIZE = 1024


class Decider(Protocol):
    """What makes the sampling decisions of new requests (local or centralized rules)."""

    def should_trace(self, host: str | None, method: str | None, path: str | None) -> bool: ...

    def default_decision(self) -> bool: ...


class SamplingRulesError(ValueError):
    """The rules file is not a valid X-Ray local sampling rules document."""


def _pattern(text: str) -> re.Pattern[str]:
    """X-Ray's wildcard syntax as a regular expression (``*`` any run, ``?`` one)."""
    parts = ("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in text)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


@dataclass(slots=True)
class _Reservoir:
    """The first ``per_second`` decisions of each wall-clock second are traces."""

    per_second: int
    second: int = 0
    used: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> bool:
        if self.per_second <= 0:
            return False
        now = int(time.time())
        if now == self.second and self.used >= self.per_second:
            return False  # spent for this second (a stale read only falls through to the lock)
        with self.lock:
            if now != self.second:
                self.second, self.used = now, 0
            if self.used >= self.per_second:
                return False
            self.used += 1
            return True


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of the file (the default rule has no patterns)."""

    description: str
    host: re.Pattern[str] | None
    method: re.Pattern[str] | None
    path: re.Pattern[str] | None
    rate: float
    reservoir: _Reservoir

    def applies(self, host: str | None, method: str | None, path: str | None) -> bool:
        return all(
            not fact or (pattern is not None and pattern.fullmatch(fact) is not None)
            for pattern, fact in ((self.host, host), (self.method, method), (self.path, path))
        )


class LocalRules:
    """The sampling decisions of one rules document; safe to call from any thread."""

    def __init__(self, document: dict[str, Any]) -> None:
        version = document.get("version")
        if version not in SUPPORTED_VERSIONS:
            raise SamplingRulesError(f"version {version!r} is not supported (1 or 2)")
        if not isinstance(document.get("default"), dict):
            raise SamplingRulesError("a default rule is required")
        host_key = "host" if version == 2 else "service_name"
        self._rules = tuple(
            _rule(raw, host_key, default=False, index=n)
            for n, raw in enumerate(document.get("rules") or ())
        )
        self._default = _rule(document["default"], host_key, default=True, index=-1)
        self._matches: OrderedDict[tuple[str | None, str | None, str | None], Rule] = OrderedDict()
        self._random = random.Random()  # noqa: S311 - a sampling rate, not a secret

    @classmethod
    def from_file(cls, path: Path) -> LocalRules:
        """Load a rules file; :class:`SamplingRulesError` names what is wrong with it."""
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SamplingRulesError(f"{path}: {exc}") from exc
        if not isinstance(document, dict):
            raise SamplingRulesError(f"{path}: not a JSON object")
        return cls(document)

    def rule_for(self, host: str | None, method: str | None, path: str | None) -> Rule:
        """The rule that applies to a request with these facts."""
        key = (host, method, path)
        rule = self._matches.get(key)
        if rule is None:
            rule = next((r for r in self._rules if r.applies(host, method, path)), self._default)
            self._matches[key] = rule
            if len(self._matches) > MATCH_CACHE_SIZE:
                self._matches.popitem(last=False)
        return rule

    def should_trace(self, host: str | None, method: str | None, path: str | None) -> bool:
        """Whether to trace a new request with these facts (uses up the reservoir)."""
        return self._decide(self.rule_for(host, method, path))

    def default_decision(self) -> bool:
        """Whether to trace work that is not a request: the default rule decides."""
        return self._decide(self._default)

    def _decide(self, rule: Rule) -> bool:
        return rule.reservoir.take() or self._random.random() < rule.rate


def _rule(raw: Any, host_key: str, *, default: bool, index: int) -> Rule:
    where = "the default rule" if default else f"rule {index}"
    if not isinstance(raw, dict):
        raise SamplingRulesError(f"{where} is not an object")
    fixed_target, rate = raw.get("fixed_target"), raw.get("rate")
    if not isinstance(fixed_target, int) or isinstance(fixed_target, bool) or fixed_target < 0:
        raise SamplingRulesError(f"{where}: fixed_target must be a non-negative integer")
    if not isinstance(rate, int | float) or isinstance(rate, bool) or rate < 0:
        raise SamplingRulesError(f"{where}: rate must be a non-negative number")
    patterns = [raw.get(key) for key in (host_key, "http_method", "url_path")]
    if default and any(patterns):
        raise SamplingRulesError(f"{where} must not have {host_key}, http_method or url_path")
    if not default and not all(isinstance(p, str) and p for p in patterns):
        raise SamplingRulesError(f"{where} needs {host_key}, http_method and url_path")
    host, method, path = (_pattern(p) if p else None for p in patterns)
    return Rule(
        description=str(raw.get("description", "")),
        host=host,
        method=method,
        path=path,
        rate=float(rate),
        reservoir=_Reservoir(fixed_target),
    )
