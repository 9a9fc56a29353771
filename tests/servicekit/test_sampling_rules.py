"""The local sampling rules of both tracing paths give the X-Ray SDK's decisions.

``servicekit.sampling_rules`` decides for both paths (the X-Ray path through
``servicekit.tracing_xray.RulesSampler``) and reads the X-Ray local sampling rules format
(AWS X-Ray developer guide, "Configuring sampling rules": versions 1 and 2,
rules tried in order, ``*``/``?`` wildcards matched case-insensitively, a
reservoir per second then a rate). These tests hold it against the X-Ray SDK's
own ``LocalSampler`` (AWS's implementation of the format) on the same
documents and requests.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
from aws_xray_sdk.core.exceptions.exceptions import InvalidSamplingManifestError
from aws_xray_sdk.core.sampling.local.sampler import LocalSampler

from servicekit import sampling_rules
from servicekit.sampling_rules import MATCH_CACHE_SIZE, LocalRules, SamplingRulesError
from servicekit.settings import DEFAULT_SAMPLING_RULES

RULES: dict[str, Any] = {
    "version": 2,
    "rules": [
        {"description": "r0", "host": "*", "http_method": "GET", "url_path": "/healthz"},
        {"description": "r1", "host": "api.*", "http_method": "*", "url_path": "/v1/items/*"},
        {"description": "r2", "host": "*", "http_method": "P?ST", "url_path": "/v1/*/read"},
        {"description": "r3", "host": "*.example.com", "http_method": "*", "url_path": "*"},
        {"description": "r4", "host": "*", "http_method": "DELETE", "url_path": "/a?c*z"},
    ],
    "default": {"fixed_target": 1, "rate": 0.05},
}
for _rule in RULES["rules"]:
    _rule.update(fixed_target=0, rate=0.5)


def sdk_rule(sampler: LocalSampler, host: str, method: str, path: str) -> str:
    """The description of the rule the X-Ray SDK applies ("default" if none)."""
    for index, rule in enumerate(sampler._rules):
        if rule.applies(host, method, path):
            return str(RULES["rules"][index]["description"])
    return "default"


def requests_to_try(count: int) -> list[tuple[str, str, str]]:
    chosen = random.Random(7)
    hosts = ["api.local", "API.LOCAL", "web.example.com", "backend:8081", "", "x.example.co"]
    methods = ["GET", "get", "POST", "PUT", "DELETE", "PATCH", ""]
    parts = ["v1", "items", "read", "healthz", "abcz", "a", "b", "c", "z", "", "X", "ÄÖ"]
    cases = [
        (chosen.choice(hosts), chosen.choice(methods), "/" + "/".join(chosen.choices(parts, k=n)))
        for n in [chosen.randint(0, 4) for _ in range(count)]
    ]
    cases += [("", "", ""), ("api.local", "GET", "/v1/items/"), ("a", "DELETE", "/abcz")]
    return cases


def test_the_same_rule_applies_as_with_the_x_ray_sdk() -> None:
    sdk = LocalSampler(copy.deepcopy(RULES))
    ours = LocalRules(copy.deepcopy(RULES))
    cases = requests_to_try(3000)
    applied = {
        case: (sdk_rule(sdk, *case), ours.rule_for(*case).description or "default")
        for case in cases
    }
    differ = {case: pair for case, pair in applied.items() if pair[0] != pair[1]}
    assert not differ
    # The cases exercise every rule and the default.
    assert {sdk_choice for sdk_choice, _ in applied.values()} == {
        "r0",
        "r1",
        "r2",
        "r3",
        "r4",
        "default",
    }


def test_version_1_matches_on_service_name() -> None:
    document = {
        "version": 1,
        "rules": [
            {
                "description": "v1",
                "service_name": "front*",
                "http_method": "*",
                "url_path": "*",
                "fixed_target": 0,
                "rate": 1.0,
            }
        ],
        "default": {"fixed_target": 0, "rate": 0.0},
    }
    rules = LocalRules(document)
    assert rules.should_trace("frontend", "GET", "/")
    assert not rules.should_trace("backend", "GET", "/")


def test_the_project_rules_never_trace_health_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = LocalRules.from_file(DEFAULT_SAMPLING_RULES)
    assert not any(rules.should_trace("backend:8081", "GET", "/healthz") for _ in range(100))
    assert not any(rules.should_trace("backend:8081", "GET", "/readyz") for _ in range(100))
    # The default rule: the first request of each second, then 5%.
    monkeypatch.setattr(sampling_rules.time, "time", lambda: 1_000_000.0)
    decisions = [rules.should_trace("backend:8081", "GET", "/v1/items") for _ in range(20_000)]
    assert decisions[0]
    assert 0.04 < sum(decisions[1:]) / 19_999 < 0.06


def test_reservoir_is_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000_000.2]
    monkeypatch.setattr(sampling_rules.time, "time", lambda: now[0])
    rules = LocalRules({"version": 2, "default": {"fixed_target": 3, "rate": 0.0}})
    assert [rules.default_decision() for _ in range(5)] == [True, True, True, False, False]
    now[0] += 0.5  # the same second
    assert not rules.default_decision()
    now[0] += 0.5  # the next one
    assert [rules.default_decision() for _ in range(4)] == [True, True, True, False]


BAD_DOCUMENTS: list[tuple[dict[str, Any], str]] = [
    ({"version": 3, "default": {"fixed_target": 1, "rate": 0.1}}, "version 3"),
    ({"version": 2}, "a default rule is required"),
    ({"version": 2, "default": {"fixed_target": -1, "rate": 0.1}}, "fixed_target"),
    ({"version": 2, "default": {"fixed_target": 1, "rate": -0.1}}, "rate"),
    (
        {"version": 2, "default": {"fixed_target": 1, "rate": 0.1, "url_path": "/x"}},
        "must not have",
    ),
    (
        {
            "version": 2,
            "rules": [{"host": "*", "http_method": "*", "fixed_target": 1, "rate": 0.1}],
            "default": {"fixed_target": 1, "rate": 0.1},
        },
        "rule 0 needs host, http_method and url_path",
    ),
]


@pytest.mark.parametrize(("document", "message"), BAD_DOCUMENTS)
def test_documents_the_x_ray_sdk_refuses_are_refused(
    document: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidSamplingManifestError):
        LocalSampler(copy.deepcopy(document))
    with pytest.raises(SamplingRulesError, match=message):
        LocalRules(document)


def test_a_file_that_is_not_json_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "rules.json"
    broken.write_text("{not json")
    with pytest.raises(SamplingRulesError, match=r"rules\.json"):
        LocalRules.from_file(broken)
    broken.write_text(json.dumps([1, 2]))
    with pytest.raises(SamplingRulesError, match="not a JSON object"):
        LocalRules.from_file(broken)


def test_remembered_matches_are_bounded() -> None:
    rules = LocalRules(copy.deepcopy(RULES))
    for n in range(MATCH_CACHE_SIZE * 3):
        rules.rule_for("api.local", "GET", f"/v1/items/{n}")
    assert len(rules._matches) == MATCH_CACHE_SIZE
    assert rules.rule_for("api.local", "GET", "/v1/items/1").description == "r1"
