"""The OpenTelemetry variant of the task definitions (``TRACING_BACKEND=otel``)
and the collector rules of ``sbcntrctl deploy verify``."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from sbcntrctl.deploy import ecs, template, tracing_variant
from sbcntrctl.release import rollout
from sbcntrctl.release.images import ReleaseError
from tests.support import ROOT
from tests.tools.deploy_support import run_cli
from tests.tools.test_deploy import ENV, SERVICES, TASKDEFS

OTEL = {**ENV, "TRACING_BACKEND": "otel"}


def container(td: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in td["containerDefinitions"] if c["name"] == name]
    return found


def environment(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("environment", [])}


@pytest.mark.parametrize("service", SERVICES)
def test_default_is_the_xray_daemon(service: str) -> None:
    rendered = ecs.render(service, ENV, TASKDEFS)
    names = {c["name"] for c in rendered.task_definition["containerDefinitions"]}
    assert "xray-daemon" in names
    assert "otel-collector" not in names
    assert (
        environment(container(rendered.task_definition, service)).get("TRACING_BACKEND", "xray-sdk")
        == "xray-sdk"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_otel_variant_replaces_the_daemon_and_verifies(service: str) -> None:
    rendered = ecs.render(service, OTEL, TASKDEFS)
    td = rendered.task_definition
    names = [c["name"] for c in td["containerDefinitions"]]
    assert "xray-daemon" not in names
    assert "otel-collector" in names
    app = container(td, service)
    assert environment(app)["TRACING_BACKEND"] == "otel"
    assert "AWS_XRAY_DAEMON_ADDRESS" not in environment(app)
    assert {"containerName": "otel-collector", "condition": "HEALTHY"} in app["dependsOn"]
    assert all(
        d["containerName"] != "xray-daemon"
        for c in td["containerDefinitions"]
        for d in c.get("dependsOn", [])
    )
    collector = container(td, "otel-collector")
    assert collector["image"].endswith(f"/sbcntr-otel-collector:{ENV['IMAGE_TAG']}")
    assert collector["logConfiguration"]["options"]["awslogs-stream-prefix"] == service
    # The whole verification: the ECS model, the project's rules, the collector's.
    assert ecs.problems(rendered) == []


Mutation = Callable[[dict[str, Any]], None]


def _collector(td: dict[str, Any]) -> dict[str, Any]:
    return container(td, "otel-collector")


CASES: list[tuple[str, Mutation, str]] = [
    ("essential", lambda td: _collector(td).update(essential=True), "otel-collector].essential"),
    (
        "port",
        lambda td: _collector(td).update(portMappings=_collector(td)["portMappings"][:1]),
        "otel-collector].portMappings",
    ),
    ("health", lambda td: _collector(td).pop("healthCheck"), "otel-collector].healthCheck"),
    (
        "depends",
        lambda td: container(td, "backend").update(
            dependsOn=[
                {"containerName": "otel-collector", "condition": "START"}
                if d["containerName"] == "otel-collector"
                else d
                for d in container(td, "backend")["dependsOn"]
            ]
        ),
        "backend].dependsOn",
    ),
    (
        "missing",
        lambda td: td.update(
            containerDefinitions=[
                c for c in td["containerDefinitions"] if c["name"] != "otel-collector"
            ]
        ),
        "containerDefinitions[backend]",
    ),
]


@pytest.mark.parametrize(("case", "mutate", "field"), CASES, ids=[c[0] for c in CASES])
def test_each_collector_rule_rejects_a_broken_variant(
    case: str, mutate: Mutation, field: str
) -> None:
    rendered = ecs.render("backend", OTEL, TASKDEFS)
    td = copy.deepcopy(rendered.task_definition)
    mutate(td)
    problems = tracing_variant.problems(td, rendered.task_role_policy)
    assert [p.field for p in problems if field in p.field], (case, problems)


def test_the_task_role_must_allow_what_the_exporter_calls() -> None:
    rendered = ecs.render("frontend", OTEL, TASKDEFS)
    assert rendered.task_role_policy is not None
    policy = copy.deepcopy(rendered.task_role_policy)
    for statement in policy["Statement"]:
        actions = statement["Action"]
        if isinstance(actions, list):
            statement["Action"] = [a for a in actions if a != "xray:PutTraceSegments"]
    problems = tracing_variant.problems(rendered.task_definition, policy)
    assert [p.field for p in problems] == ["taskRoleArn"]
    assert "xray:PutTraceSegments" in problems[0].message


def test_the_collector_image_is_the_one_compose_builds() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    image = compose["services"]["otel-collector"]["image"]
    assert image == "sbcntr-otel-collector:${IMAGE_TAG:-local}"
    collector = container(ecs.render("backend", OTEL, TASKDEFS).task_definition, "otel-collector")
    assert collector["image"].rsplit("/", 1)[1].split(":")[0] == image.split(":")[0]


def test_an_empty_backend_is_the_default_and_an_unknown_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The release passes the GitHub environment's variable, empty when unset; a typo
    must stop the deploy rather than deploy the X-Ray path."""
    empty = ecs.render("backend", {**ENV, "TRACING_BACKEND": ""}, TASKDEFS)
    assert empty.task_definition == ecs.render("backend", ENV, TASKDEFS).task_definition
    with pytest.raises(template.TemplateError, match="TRACING_BACKEND='OTel': one of xray-sdk"):
        ecs.render("backend", {**ENV, "TRACING_BACKEND": "OTel"}, TASKDEFS)

    result = run_cli("render", "backend", env={**ENV, "TRACING_BACKEND": "open-telemetry"})
    assert result.returncode == 2
    assert "TRACING_BACKEND='open-telemetry'" in result.stderr

    monkeypatch.setattr(rollout, "deployment_env", lambda _: {**ENV, "TRACING_BACKEND": "x"})
    with pytest.raises(ReleaseError, match="deploy of backend to stg: TRACING_BACKEND='x'"):
        list(rollout.deploy("stg", "0" * 40, {}, wait_seconds=0, directory=TASKDEFS))
