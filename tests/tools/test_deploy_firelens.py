"""``sbcntrctl deploy verify`` and the log router: every variable the router's
configuration reads is set, and TLS verification stays on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sbcntrctl.deploy import ecs, firelens
from tests.firelens.classic import variables
from tests.firelens.router import image_defaults
from tests.firelens.test_config import sections
from tests.support import ROOT
from tests.tools.test_deploy import ENV, SERVICES, TASKDEFS, container


def router_env(td: dict[str, Any]) -> list[dict[str, str]]:
    return list(container(td, "log-router")["environment"])


def test_the_check_reads_the_variables_the_configuration_reads() -> None:
    assert firelens.configuration_variables() == variables(sections())
    assert firelens.image_defaults() == image_defaults()


@pytest.mark.parametrize("service", SERVICES)
def test_rendered_task_definitions_set_every_router_variable(service: str) -> None:
    td = ecs.render(service, ENV, TASKDEFS).task_definition
    assert firelens.problems(td) == []
    # The task definition sets the names; the image gives the timings.
    assert {v["name"] for v in router_env(td)} | image_defaults().keys() >= variables(sections())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda env: [v for v in env if v["name"] != "LOG_STREAM_PREFIX"], "LOG_STREAM_PREFIX"),
        (
            lambda env: [{**v, "value": ""} if v["name"] == "LOG_S3_PREFIX" else v for v in env],
            "LOG_S3_PREFIX",
        ),
        (lambda env: [*env, {"name": "OUTPUT_TLS_VERIFY", "value": "Off"}], "OUTPUT_TLS_VERIFY"),
        (lambda env: [*env, {"name": "S3_UPLOAD_TIMEOUT", "value": ""}], "S3_UPLOAD_TIMEOUT"),
    ],
)
def test_a_router_variable_unset_or_empty_is_a_problem(change: Any, field: str) -> None:
    td = ecs.render("backend", ENV, TASKDEFS).task_definition
    container(td, "log-router")["environment"] = change(router_env(td))
    fields = [p.field for p in firelens.problems(td)]
    assert fields == [f"containerDefinitions[log-router].environment.{field}"]


def test_deploy_verify_reports_an_unset_router_variable(tmp_path: Path) -> None:
    taskdefs = tmp_path / "taskdefs"
    shutil.copytree(TASKDEFS, taskdefs)
    path = taskdefs / "backend" / "task-def.json"
    td = json.loads(path.read_text())
    router = container(td, "log-router")
    router["environment"] = [v for v in router["environment"] if v["name"] != "LOG_BUCKET"]
    path.write_text(json.dumps(td))
    sbcntrctl = str(Path(sys.executable).parent / "sbcntrctl")
    result = subprocess.run(
        [sbcntrctl, "deploy", "verify", "backend", "--dir", str(taskdefs)],
        env={"PATH": "/usr/bin:/bin", **ENV},
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "containerDefinitions[log-router].environment.LOG_BUCKET" in result.stderr
