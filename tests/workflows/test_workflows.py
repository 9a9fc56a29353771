"""The release pipeline's workflows: linted, and the governance rules they must keep.

Each rule is a function over the parsed workflow and is shown to fail on a
mutated copy, so a rule that cannot fail is caught here too.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sbcntrctl.__main__ import build_parser
from sbcntrctl.release.images import DEPLOYED, IMAGES
from tests.support import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"uses: \S+@[0-9a-f]{40} # v?\d+\.\d+\.\d+")


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the `on:` key as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, spec in workflow["jobs"].items() for step in spec["steps"]]


# --- the rules


def unpinned_actions(workflow: dict[str, Any]) -> list[str]:
    """Every third-party action is pinned by a full commit SHA."""
    return [
        f"{job}: {step['uses']}"
        for job, step in steps(workflow)
        if "uses" in step and not step["uses"].startswith("./") and not PINNED.match(step["uses"])
    ]


def jobs_without_permissions(workflow: dict[str, Any]) -> list[str]:
    """The workflow grants nothing by default; each job states what it needs."""
    missing = [job for job, spec in workflow["jobs"].items() if "permissions" not in spec]
    if workflow.get("permissions") != {}:
        missing.append("(workflow-level permissions must be {})")
    return missing


def oidc_outside_aws_jobs(workflow: dict[str, Any]) -> list[str]:
    """id-token: write only in jobs that assume the CI role, and every such job has it."""
    wrong = []
    for job, spec in workflow["jobs"].items():
        uses_oidc = any(
            "configure-aws-credentials" in step.get("uses", "") for step in spec["steps"]
        )
        has_token = (spec.get("permissions") or {}).get("id-token") == "write"
        if uses_oidc != has_token:
            wrong.append(job)
    return wrong


def expressions_in_scripts(workflow: dict[str, Any]) -> list[str]:
    """No ${{ }} inside run: scripts; values reach the shell through env."""
    return [
        f"{job}: {step['run']}" for job, step in steps(workflow) if "${{" in step.get("run", "")
    ]


def release_order_problems(workflow: dict[str, Any]) -> list[str]:
    """images -> stg -> prod, and prod waits for the `prod` environment's approval."""
    jobs = workflow["jobs"]
    problems = []
    if jobs.get("stg", {}).get("needs") != "images":
        problems.append("stg must need images")
    if jobs.get("prod", {}).get("needs") != "stg":
        problems.append("prod must need stg")
    if jobs.get("prod", {}).get("environment") != "prod":
        problems.append("prod must run in the `prod` environment (required reviewers)")
    if workflow.get("concurrency", {}).get("cancel-in-progress") is not False:
        problems.append("one release at a time, never cancelled mid-deploy")
    return problems


def image_tag_problems(workflow: dict[str, Any]) -> list[str]:
    """Images are tagged with the commit SHA and nothing else."""
    problems = []
    for job, step in steps(workflow):
        if "build-push-action" in step.get("uses", ""):
            if step["with"].get("tags") != "${{ steps.spec.outputs.ref }}":
                problems.append(f"{job}: tags must be the spec step's ref")
            if step["with"].get("push") is not False:
                problems.append(f"{job}: the build step must not push (scan first)")
        run = step.get("run", "")
        tags_an_image = "release spec" in run or "release push" in run
        if tags_an_image and '--commit "$GITHUB_SHA"' not in run:
            problems.append(f"{job}: {run} must tag with the commit SHA")
        if re.search(r":latest\b|:main\b|:stable\b", run + str(step.get("with", ""))):
            problems.append(f"{job}: a mutable tag")
    return problems


SPEC = "${{ steps.spec.outputs.%s }}"
MAIN_ONLY = "github.ref == 'refs/heads/main'"


def build_platform_problems(workflow: dict[str, Any]) -> list[str]:
    """Every image build targets the spec's platform (the tasks' runtimePlatform), with
    QEMU set up for it first, and reads and writes the BuildKit cache of that platform."""
    problems = []
    for job, spec in workflow["jobs"].items():
        qemu = None
        for step in spec["steps"]:
            uses = step.get("uses", "")
            if "setup-qemu-action" in uses:
                qemu = step.get("with", {}).get("platforms")
            if "build-push-action" not in uses:
                continue
            given = step["with"]
            if given.get("platforms") != SPEC % "platform":
                problems.append(f"{job}: platforms must be the spec's platform")
            if qemu != SPEC % "platform":
                problems.append(f"{job}: QEMU is not set up for the platform before the build")
            scope = SPEC % "cache-scope"
            if given.get("cache-from") != f"type=gha,scope={scope}":
                problems.append(f"{job}: cache-from must read the platform's scope")
            if given.get("cache-to") != f"type=gha,mode=max,scope={scope}":
                problems.append(f"{job}: cache-to must write the platform's scope (mode=max)")
    return problems


def scanned_image_problems(workflow: dict[str, Any]) -> list[str]:
    """The release builds one platform into the engine, and Trivy, Dockle and the SBOM read
    that image, the one ``release push`` pushes."""
    problems = []
    ref = SPEC % "ref"
    for job, step in steps(workflow):
        uses, given = step.get("uses", ""), step.get("with", {})
        if "build-push-action" in uses and (
            given.get("load") is not True or "," in str(given.get("platforms"))
        ):
            problems.append(f"{job}: build one platform and load it (what is scanned is pushed)")
        if "trivy-action" in uses and given.get("image-ref") != ref:
            problems.append(f"{job}: Trivy must scan {ref}")
        if "sbom-action" in uses and given.get("image") != ref:
            problems.append(f"{job}: the SBOM must describe {ref}")
        if "release dockle" in step.get("run", "") and step.get("env", {}).get("REF") != ref:
            problems.append(f"{job}: Dockle must read {ref}")
    return problems


def role_problems(workflow: dict[str, Any]) -> list[str]:
    """The images job assumes the push role; every job in an environment assumes that
    environment's deploy role, and the release's deploy jobs run for main only."""
    problems = []
    for job, spec in workflow["jobs"].items():
        for step in spec["steps"]:
            if "configure-aws-credentials" not in step.get("uses", ""):
                continue
            role = step["with"].get("role-to-assume")
            want = (
                "${{ vars.DEPLOY_ROLE_ARN }}"
                if "environment" in spec
                else ("${{ vars.PUSH_ROLE_ARN }}")
            )
            if role != want:
                problems.append(f"{job}: assumes {role}, not {want}")
        on_main = workflow["on"] == {"push": {"branches": ["main"]}}
        if on_main and "environment" in spec and spec.get("if") != MAIN_ONLY:
            problems.append(f"{job}: an environment job must run for main only")
    return problems


RULES = (
    unpinned_actions,
    jobs_without_permissions,
    oidc_outside_aws_jobs,
    expressions_in_scripts,
)


@pytest.mark.parametrize("name", ["ci.yml", "release.yml", "rollback.yml"])
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_every_workflow_keeps_the_rule(name: str, rule: Any) -> None:
    assert rule(load(name)) == []


def test_every_pin_names_its_version() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if "uses: " in line:
                assert VERSION_COMMENT.search(line), f"{path.name}: {line.strip()}"


def test_release_order_approval_and_tags() -> None:
    release = load("release.yml")
    assert release_order_problems(release) == []
    assert image_tag_problems(release) == []
    assert scanned_image_problems(release) == []
    assert release["on"] == {"push": {"branches": ["main"]}}
    assert release["jobs"]["images"]["strategy"]["matrix"]["image"] == list(IMAGES)


def deploy_digest_problems(workflow: dict[str, Any]) -> list[str]:
    """Each deploy passes the digest record of every deployed image the images job
    pushed (``digest-<image>.json``; not the load generator's, which no service
    runs), and the environment's ``TRACING_BACKEND`` variable."""
    problems = []
    expected = [f"digest-{name}.json" for name in DEPLOYED]
    deploys = 0
    for job, step in steps(workflow):
        run = step.get("run", "")
        if "release deploy" not in run:
            continue
        deploys += 1
        words = shlex.split(run)
        records = words[words.index("--digests") + 1 :]
        if records != expected:
            problems.append(f"{job}: --digests {' '.join(records)} != {' '.join(expected)}")
        backend = step.get("env", {}).get("TRACING_BACKEND")
        if backend != "${{ vars.TRACING_BACKEND }}":
            problems.append(f"{job}: TRACING_BACKEND must come from the environment's variable")
    if deploys != 2:
        problems.append(f"{deploys} deploy steps, expected stg and prod")
    return problems


def test_every_deploy_pins_every_image_the_release_built() -> None:
    """A digest left out fails the deploy only when a task uses that image (the
    collector: only with ``TRACING_BACKEND=otel``), so it is checked here."""
    release = load("release.yml")
    assert deploy_digest_problems(release) == []
    # The images job writes one record per matrix image under that name.
    (push,) = [s for _, s in steps(release) if "release push" in s.get("run", "")]
    assert '--out "digest-$IMAGE.json"' in push["run"]

    broken = _mutated("release.yml")
    deploy = next(s for _, s in steps(broken) if "release deploy prod" in s.get("run", ""))
    deploy["run"] = deploy["run"].replace(" digest-otel-collector.json", "")
    assert deploy_digest_problems(broken) == [
        "prod: --digests digest-backend.json digest-frontend.json digest-log-router.json"
        " != " + " ".join(f"digest-{name}.json" for name in DEPLOYED)
    ]
    deploy["run"] += " digest-otel-collector.json digest-loadtest.json"
    assert deploy_digest_problems(broken) == [
        "prod: --digests digest-backend.json digest-frontend.json digest-log-router.json"
        " digest-otel-collector.json digest-loadtest.json"
        " != " + " ".join(f"digest-{name}.json" for name in DEPLOYED)
    ]
    del deploy["env"]
    assert "prod: TRACING_BACKEND must come from the environment's variable" in (
        deploy_digest_problems(broken)
    )


def test_the_load_generator_is_built_scanned_and_pushed_but_not_deployed() -> None:
    """The load generator is a release image like the others (both matrices run every
    step on it: build, Trivy, Dockle, SBOM, push), and no deploy step names it."""
    assert not IMAGES["loadtest"].deployed
    assert "loadtest" not in DEPLOYED
    assert [name for name in IMAGES if name not in DEPLOYED] == ["loadtest"]
    for name in ("ci.yml", "release.yml"):
        assert "loadtest" in load(name)["jobs"]["images"]["strategy"]["matrix"]["image"]
    release = load("release.yml")
    for _, step in steps(release):
        if "release deploy" in step.get("run", ""):
            assert "digest-loadtest.json" not in step["run"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = load("ci.yml")
    runs = [step.get("run", "") for _, step in steps(ci)]
    assert "sudo python3 dev.py test" in runs
    assert "python3 dev.py test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 dev.py test" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert ci["jobs"]["images"]["strategy"]["matrix"]["image"] == list(IMAGES)


def test_every_sbcntrctl_call_parses() -> None:
    """The workflows call real commands with valid arguments (env values stand in)."""
    parser = build_parser()
    calls = 0
    for path in WORKFLOWS.glob("*.yml"):
        for _, step in steps(load(path.name)):
            for line in step.get("run", "").splitlines():
                if ".venv/bin/sbcntrctl" not in line:
                    continue
                words = shlex.split(line.split(">>")[0])
                args = [_stand_in(w) for w in words[1:]]
                parser.parse_args(args)
                calls += 1
    assert calls >= 8


def _stand_in(word: str) -> str:
    values = {"$GITHUB_SHA": "0" * 40, "$IMAGE": "backend", "$SERVICE": "backend"}
    values |= {"$ENVIRONMENT": "stg", "$REF": "r", "$REGISTRY": "123.dkr.ecr"}
    return values.get(word, word.replace("$IMAGE", "backend"))


@pytest.mark.parametrize("name", ["ci.yml", "release.yml"])
def test_images_are_built_for_the_tasks_platform_with_the_cache_written(name: str) -> None:
    assert build_platform_problems(load(name)) == []


@pytest.mark.parametrize("name", ["release.yml", "rollback.yml"])
def test_each_job_assumes_the_role_of_its_step(name: str) -> None:
    assert role_problems(load(name)) == []


def test_stg_admits_main_only_as_the_docs_set_it_up() -> None:
    """GitHub's OIDC subject of a job in an environment names no branch, so the stg
    environment's deployment branch rule is what keeps other branches out of stg."""
    text = " ".join((ROOT / "docs" / "release.md").read_text(encoding="utf-8").split())
    assert '`stg` and `prod`, each with "Deployment branches: main only"' in text


# --- each rule fails on a broken copy


def _mutated(name: str) -> dict[str, Any]:
    return copy.deepcopy(load(name))


def test_rules_fail_on_broken_workflows() -> None:
    broken = _mutated("release.yml")
    broken["jobs"]["images"]["steps"][0]["uses"] = "actions/checkout@v4"
    assert unpinned_actions(broken)

    broken = _mutated("release.yml")
    del broken["jobs"]["stg"]["permissions"]
    assert jobs_without_permissions(broken) == ["stg"]

    broken = _mutated("ci.yml")
    broken["jobs"]["test"]["permissions"]["id-token"] = "write"
    assert oidc_outside_aws_jobs(broken) == ["test"]

    broken = _mutated("rollback.yml")
    broken["jobs"]["rollback"]["steps"][-1]["run"] = "sbcntrctl x ${{ inputs.service }}"
    assert expressions_in_scripts(broken)

    broken = _mutated("release.yml")
    del broken["jobs"]["prod"]["environment"]
    assert release_order_problems(broken)

    broken = _mutated("release.yml")
    build = next(s for _, s in steps(broken) if "build-push-action" in s.get("uses", ""))
    build["with"]["tags"] = "sbcntr-backend:latest"
    assert image_tag_problems(broken)


def test_platform_cache_scan_and_role_rules_fail_on_broken_copies() -> None:
    def build(workflow: dict[str, Any]) -> dict[str, Any]:
        return next(s for _, s in steps(workflow) if "build-push-action" in s.get("uses", ""))

    broken = _mutated("release.yml")
    del build(broken)["with"]["platforms"]  # built for the runner: linux/amd64
    assert build_platform_problems(broken) == ["images: platforms must be the spec's platform"]
    broken = _mutated("ci.yml")
    del build(broken)["with"]["cache-to"]  # the cache is never written
    assert build_platform_problems(broken) == [
        "images: cache-to must write the platform's scope (mode=max)"
    ]
    broken = _mutated("release.yml")
    broken["jobs"]["images"]["steps"] = [
        s for s in broken["jobs"]["images"]["steps"] if "setup-qemu" not in s.get("uses", "")
    ]
    assert build_platform_problems(broken) == [
        "images: QEMU is not set up for the platform before the build"
    ]

    broken = _mutated("release.yml")
    build(broken)["with"]["platforms"] = "linux/amd64,linux/arm64"  # cannot be loaded
    assert scanned_image_problems(broken)
    trivy = next(s for _, s in steps(broken) if "trivy-action" in s.get("uses", ""))
    trivy["with"]["image-ref"] = "sbcntr-backend:other"
    assert "images: Trivy must scan ${{ steps.spec.outputs.ref }}" in (
        scanned_image_problems(broken)
    )

    broken = _mutated("release.yml")
    prod = broken["jobs"]["prod"]
    login = next(s for s in prod["steps"] if "configure-aws" in s.get("uses", ""))
    login["with"]["role-to-assume"] = "${{ vars.PUSH_ROLE_ARN }}"
    del broken["jobs"]["stg"]["if"]
    assert role_problems(broken) == [
        "stg: an environment job must run for main only",
        "prod: assumes ${{ vars.PUSH_ROLE_ARN }}, not ${{ vars.DEPLOY_ROLE_ARN }}",
    ]


# --- the linters


def test_actionlint_is_clean() -> None:
    actionlint = BIN / "actionlint"
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (dev.py test installs it with apt)")
    done = subprocess.run(
        [str(actionlint), "-verbose", *sorted(map(str, WORKFLOWS.glob("*.yml")))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert 'Rule "shellcheck" was disabled' not in done.stderr
    assert done.returncode == 0, done.stdout


def test_actionlint_catches_an_injection(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n"
        "    permissions: {}\n    steps:\n"
        "      - run: echo ${{ github.event.head_commit.message }}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [str(BIN / "actionlint"), str(bad)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "potentially untrusted" in done.stdout


@pytest.mark.slow
def test_zizmor_pedantic_is_clean() -> None:
    done = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--persona", "pedantic", str(WORKFLOWS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings" in done.stdout
