"""``sbcntrctl release``: image names, the scan gate, digest pinning, the smoke check."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy_hook import checks
from sbcntrctl.deploy import ecs, platforms
from sbcntrctl.loadtest import ecs as loadtest_ecs
from sbcntrctl.release import images, pinning, registry, scan, smoke
from tests.conftest import StartService
from tests.integration.conftest import start_stack
from tests.support import ROOT, ScriptedBackend
from tests.tools.test_deploy import ENV, TASKDEFS

COMMIT = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "ab" * 32
LOG_ROUTER_DIGEST = "sha256:" + "cd" * 32


# --- names


def test_refs_are_the_full_commit_sha_only() -> None:
    backend = images.image("backend")
    assert backend.ref(COMMIT, "1.dkr.ecr.x.amazonaws.com/") == (
        f"1.dkr.ecr.x.amazonaws.com/sbcntr-backend:{COMMIT}"
    )
    for bad in ("latest", COMMIT[:7], COMMIT.upper(), f"{COMMIT}\n", "main"):
        with pytest.raises(images.ReleaseError, match="full commit SHA"):
            backend.ref(bad)


def test_every_image_builds_from_a_dockerfile_that_exists() -> None:
    for image in images.IMAGES.values():
        assert (ROOT / image.dockerfile).is_file()
        assert (ROOT / image.context).is_dir()
        assert image.repository.startswith("sbcntr-")


def test_images_are_built_for_the_platform_the_tasks_run_on() -> None:
    """The build platform is the task definitions' runtimePlatform (ARM64 by default), so
    the pushed images pass ``deploy verify``; spec hands it and the cache scope to the
    workflows."""
    for service in ("frontend", "backend"):
        td = ecs.render(service, ENV, TASKDEFS).task_definition
        assert platforms.task_platform(td) == images.PLATFORM == "linux/arm64"
    sbcntrctl = str(Path(sys.executable).parent / "sbcntrctl")
    done = subprocess.run(
        [sbcntrctl, "release", "spec", "log-router", "--commit", COMMIT],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "platform=linux/arm64\ncache-scope=log-router-linux-arm64\n" in done.stdout


def test_the_readmes_tag_and_build_images_as_the_pipeline_does() -> None:
    """One tag scheme: the full commit SHA (``release spec``/``push`` refuse anything
    else), built for the release's platform."""
    for readme in (ROOT / "infra" / "README.md", ROOT / "taskdefs" / "README.md"):
        text = readme.read_text(encoding="utf-8")
        tags = re.findall(r"IMAGE_TAG=(\$\([^)]*\)|\S+)", text)
        assert tags, readme
        assert set(tags) == {"$(git rev-parse HEAD)"}, readme
        assert "--short" not in text
        assert "<env>-<commit>" not in text
    infra = (ROOT / "infra" / "README.md").read_text(encoding="utf-8")
    builds = [line for line in infra.splitlines() if line.startswith("docker ") and "build" in line]
    assert len(builds) == len(images.IMAGES)
    assert all(f"--platform {images.PLATFORM}" in line for line in builds)


# --- the scan gate


def trivy_report(*vulns: dict[str, Any]) -> dict[str, Any]:
    return {
        "SchemaVersion": 2,
        "Results": [{"Target": "debian 12.12", "Class": "os-pkgs", "Vulnerabilities": [*vulns]}],
    }


def vuln(vid: str, severity: str, fixed: str = "") -> dict[str, Any]:
    return {
        "VulnerabilityID": vid,
        "PkgName": "openssl",
        "InstalledVersion": "3.0.15-1",
        "FixedVersion": fixed,
        "Severity": severity,
    }


def dockle_report(*details: tuple[str, str]) -> dict[str, Any]:
    return {
        "summary": {"fatal": 0, "warn": 0, "info": 0, "pass": 10},
        "details": [{"code": c, "title": c, "level": lvl, "alerts": ["x"]} for c, lvl in details],
    }


def test_fixable_critical_and_high_block_unfixed_and_medium_do_not() -> None:
    trivy = trivy_report(
        vuln("CVE-1", "CRITICAL", "3.0.16-1"),
        vuln("CVE-2", "HIGH", "3.0.16-1"),
        vuln("CVE-3", "HIGH"),
        vuln("CVE-4", "MEDIUM", "3.0.16-1"),
    )
    result = scan.verdict("backend", trivy, dockle_report(), [])
    assert [f.key for f in result.blocking] == ["CVE-1", "CVE-2"]
    assert not result.ok


def test_dockle_fatal_and_warn_block_info_does_not() -> None:
    dockle = dockle_report(
        ("CIS-DI-0001", "WARN"), ("DKL-DI-0005", "FATAL"), ("CIS-DI-0005", "INFO")
    )
    result = scan.verdict("frontend", trivy_report(), dockle, [])
    assert [f.key for f in result.blocking] == ["CIS-DI-0001", "DKL-DI-0005"]


def test_an_acceptance_covers_only_its_images_and_only_until_its_date(tmp_path: Path) -> None:
    accepted_file = tmp_path / "accepted.toml"
    accepted_file.write_text(
        '[[trivy]]\nid = "CVE-1"\nimages = ["backend"]\nreason = "no fix upstream"\n'
        "until = 2027-01-31\n",
        encoding="utf-8",
    )
    accepted = scan.load_accepted(accepted_file)
    trivy = trivy_report(vuln("CVE-1", "CRITICAL", "2"))
    before = dt.date(2027, 1, 31)
    assert scan.verdict("backend", trivy, dockle_report(), accepted, before).ok
    assert not scan.verdict("frontend", trivy, dockle_report(), accepted, before).ok
    after = dt.date(2027, 2, 1)
    assert not scan.verdict("backend", trivy, dockle_report(), accepted, after).ok


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[[dockle]]\ncode = "CIS-DI-0001"\nimages = ["backend"]\n', "needs code, images"),
        ('[[trivy]]\nid = "CVE-1"\nimages = ["web"]\nreason = "r"\n', "unknown images"),
        ('[[grype]]\nid = "CVE-1"\n', "unknown tables"),
        ('[[trivy]]\nid = "C"\nimages = ["backend"]\nreason = "r"\nuntil = "soon"\n', "TOML date"),
    ],
)
def test_an_acceptance_without_its_reason_is_refused(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "accepted.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(images.ReleaseError, match=error):
        scan.load_accepted(path)


def test_the_checked_in_acceptances_load_and_each_has_a_reason() -> None:
    accepted = scan.load_accepted()
    assert accepted
    assert all(len(a.reason) > 20 for a in accepted)


def test_verdict_command_exit_status(tmp_path: Path) -> None:
    (tmp_path / "trivy.json").write_text(json.dumps(trivy_report(vuln("CVE-9", "HIGH", "2"))))
    (tmp_path / "dockle.json").write_text(json.dumps(dockle_report(("CIS-DI-0001", "WARN"))))
    command = [
        str(Path(sys.executable).parent / "sbcntrctl"),
        "release",
        "verdict",
        "log-router",
        "--trivy",
        str(tmp_path / "trivy.json"),
        "--dockle",
        str(tmp_path / "dockle.json"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "BLOCKING: trivy HIGH CVE-9" in done.stdout
    assert "accepted: dockle WARN CIS-DI-0001" in done.stdout  # the checked-in acceptance
    (tmp_path / "trivy.json").write_text(json.dumps(trivy_report()))
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout
    assert "log-router: scan passed" in done.stdout


# --- digests


def test_records_of_another_commit_are_refused(tmp_path: Path) -> None:
    record = tmp_path / "digest-backend.json"
    registry.write_record(record, images.image("backend"), COMMIT, DIGEST)
    assert registry.read_records([record], COMMIT) == {"sbcntr-backend": DIGEST}
    other = "f" * 40
    with pytest.raises(images.ReleaseError, match="records commit"):
        registry.read_records([record], other)
    with pytest.raises(images.ReleaseError, match="a second record"):
        registry.read_records([record, record], COMMIT)
    with pytest.raises(images.ReleaseError, match="not an image digest"):
        registry.write_record(record, images.image("backend"), COMMIT, "sha256:abc")


def test_task_definitions_pin_digests_and_name_the_commit() -> None:
    rendered = ecs.render("backend", {**ENV, "IMAGE_TAG": COMMIT}, TASKDEFS)
    td = rendered.task_definition
    digests = {"sbcntr-backend": DIGEST, "sbcntr-log-router": LOG_ROUTER_DIGEST}
    pinning.pin_images(td, digests, COMMIT)
    by_name = {c["name"]: c for c in td["containerDefinitions"]}
    assert by_name["backend"]["image"].endswith(f"/sbcntr-backend@{DIGEST}")
    assert by_name["log-router"]["image"].endswith(f"/sbcntr-log-router@{LOG_ROUTER_DIGEST}")
    assert by_name["backend"]["dockerLabels"][pinning.REVISION_LABEL] == COMMIT
    assert "@sha256" not in by_name["xray-daemon"]["image"]  # not ours: left as it is
    assert ecs.problems(rendered) == []


def test_with_opentelemetry_the_collector_is_pinned_too() -> None:
    """TRACING_BACKEND=otel: the collector is one of this project's images, built and
    pushed by the release; deployed without its record, the release stops."""
    env = {**ENV, "IMAGE_TAG": COMMIT, "TRACING_BACKEND": "otel"}
    rendered = ecs.render("frontend", env, TASKDEFS)
    td = rendered.task_definition
    digests = {image.repository: DIGEST for image in images.IMAGES.values()}
    pinning.pin_images(td, digests, COMMIT)
    by_name = {c["name"]: c for c in td["containerDefinitions"]}
    assert by_name["otel-collector"]["image"].endswith(f"/sbcntr-otel-collector@{DIGEST}")
    assert by_name["otel-collector"]["dockerLabels"][pinning.REVISION_LABEL] == COMMIT
    assert ecs.problems(rendered) == []
    td = ecs.render("frontend", env, TASKDEFS).task_definition
    del digests["sbcntr-otel-collector"]
    with pytest.raises(images.ReleaseError, match="no digest recorded for sbcntr-otel-collector"):
        pinning.pin_images(td, digests, COMMIT)


def test_the_deploy_needs_no_record_of_the_load_generator() -> None:
    """``release deploy`` gets the records of the deployed images only (release.yml):
    every image the services' task definitions run, with either tracing backend, is
    one of them, and the load generator's image is run by its own task definitions
    only, on the tag the release pushed (``sbcntrctl loadtest ecs run --image-tag``)."""
    loadtest = images.image("loadtest")
    assert not loadtest.deployed
    assert (loadtest.dockerfile, loadtest.context) == ("loadtest/Dockerfile", ".")
    digests = {images.image(name).repository: DIGEST for name in images.DEPLOYED}
    assert loadtest.repository not in digests
    for tracing in ("xray-sdk", "otel"):
        for service in ("backend", "frontend"):
            env = {**ENV, "IMAGE_TAG": COMMIT, "TRACING_BACKEND": tracing}
            td = ecs.render(service, env, TASKDEFS).task_definition
            pinning.pin_images(td, digests, COMMIT)
            assert all(loadtest.repository not in c["image"] for c in td["containerDefinitions"])
    plan = loadtest_ecs.Plan(
        *("dev", "123456789012", "ap-northeast-1", "sbcntr-dev", COMMIT, "bucket"),
        *(["subnet-1"], "sg-1", "https://alb.example.com", 2, "ecs-1"),
    )
    registry_host = "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com"
    for role in ("master", "worker"):
        (container,) = loadtest_ecs.task_definition(role, plan)["containerDefinitions"]
        assert container["image"] == loadtest.ref(COMMIT, registry_host)


def test_pinning_refuses_another_commit_or_a_missing_digest() -> None:
    td = ecs.render("frontend", {**ENV, "IMAGE_TAG": "e" * 40}, TASKDEFS).task_definition
    with pytest.raises(images.ReleaseError, match="is not the commit"):
        pinning.pin_images(td, {"sbcntr-frontend": DIGEST}, COMMIT)
    td = ecs.render("frontend", {**ENV, "IMAGE_TAG": COMMIT}, TASKDEFS).task_definition
    with pytest.raises(images.ReleaseError, match="no digest recorded for sbcntr-log-router"):
        pinning.pin_images(td, {"sbcntr-frontend": DIGEST}, COMMIT)


# --- smoke


@pytest.mark.slow
def test_smoke_passes_on_running_services_and_names_what_fails(
    start: StartService, tmp_path: Path
) -> None:
    stack = start_stack(start, tmp_path)
    lines = smoke.check_pages(stack.frontend.url)
    # The hook's list (deploy_hook/checks.py), the same module object when both load it.
    assert smoke.checks() is checks
    assert lines == [f"GET {c.path}: 200" for c in checks.CHECKS["frontend"]]
    assert smoke.run_load(stack.frontend.url, 4, 4, tmp_path / "report") == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary
    stack.backend.stop()
    with pytest.raises(images.ReleaseError, match=r"/items \(503: expected 200\)"):
        smoke.check_pages(stack.frontend.url, timeout=10)


def test_smoke_fails_a_page_that_answers_200_with_the_wrong_content() -> None:
    """A 200 is not enough: a maintenance page or an error page served with 200
    fails the check that expects the home page's heading."""
    with (
        ScriptedBackend([(200, b"<h1>Under maintenance</h1>")]) as wrong,
        pytest.raises(images.ReleaseError) as failed,
    ):
        smoke.check_pages(wrong.url, timeout=5)
    assert "/ (200: no '<h1>Hello world</h1>' in the answer)" in str(failed.value)
    assert "/api/items (200: not JSON)" in str(failed.value)
