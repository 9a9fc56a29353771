"""The deploy command offline: templates render and verify, each rule rejects a
broken definition naming its field, the IAM policies agree with the task
definitions. The cycle against a moto server is in test_deploy_moto.py."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from parliament import analyze_policy_string

from sbcntrctl.deploy import ecs, iam, migrate, template, verify
from tests.support import ROOT
from tests.tools.deploy_support import ENV, SERVICES, TASKDEFS, moto_server, run_cli

__all__ = ["moto_server"]  # the fixture, for the test modules that import it from here


@pytest.mark.parametrize("service", SERVICES)
def test_templates_render_and_verify(service: str) -> None:
    rendered = ecs.render(service, ENV, TASKDEFS)
    assert ecs.problems(rendered) == []
    app = rendered.task_definition["containerDefinitions"][0]
    assert app["image"].endswith(f"/sbcntr-{service}:0a1b2c3")
    assert rendered.task_definition["runtimePlatform"]["cpuArchitecture"] == "ARM64"


def test_render_names_every_missing_variable() -> None:
    env = {k: v for k, v in ENV.items() if k not in ("IMAGE_TAG", "DB_SECRET_ARN", "ECS_CLUSTER")}
    with pytest.raises(template.MissingVariables) as failure:
        ecs.render("backend", env, TASKDEFS)
    assert set(failure.value.names) == {"IMAGE_TAG", "DB_SECRET_ARN", "ECS_CLUSTER"}


def test_defaults_apply_and_can_be_overridden() -> None:
    td = ecs.render("frontend", {**ENV, "CPU_ARCHITECTURE": "X86_64"}, TASKDEFS).task_definition
    assert td["runtimePlatform"]["cpuArchitecture"] == "X86_64"
    assert (td["cpu"], td["memory"]) == ("512", "1024")


def app(td: dict[str, Any]) -> dict[str, Any]:
    return dict(td["containerDefinitions"][0])


def container(td: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in td["containerDefinitions"] if c["name"] == name)


Mutation = Callable[[dict[str, Any]], None]
BROKEN_TASK_DEFINITIONS: list[tuple[str, Mutation, str]] = [
    (
        "unknown key",
        lambda td: td["containerDefinitions"][0].update(readOnlyRootFilesystem=True),
        "readOnlyRootFilesystem",
    ),
    (
        "misspelt key",
        lambda td: td["containerDefinitions"][0].update(stopTimeOut=30),
        "stopTimeOut",
    ),
    (
        "wrong type",
        lambda td: td["containerDefinitions"][0]["portMappings"][0].update(containerPort="8081"),
        "containerPort",
    ),
    ("missing required", lambda td: td.pop("family"), "family"),
    (
        "container without a name",
        lambda td: td["containerDefinitions"][0].pop("name"),
        "name/image",
    ),
    (
        "dependsOn condition",
        lambda td: td["containerDefinitions"][0]["dependsOn"][0].update(condition="STARTED"),
        "dependsOn.condition",
    ),
    (
        "dependsOn unknown container",
        lambda td: td["containerDefinitions"][0]["dependsOn"][1].update(containerName="xray"),
        "dependsOn.containerName",
    ),
    (
        "HEALTHY without health check",
        lambda td: container(td, "log-router").pop("healthCheck"),
        "dependsOn",
    ),
    (
        "protocol",
        lambda td: td["containerDefinitions"][0]["portMappings"][0].update(protocol="sctp"),
        "portMappings.protocol",
    ),
    ("Fargate size", lambda td: td.update(cpu="256", memory="4096"), "cpu/memory"),
    ("network mode", lambda td: td.update(networkMode="bridge"), "networkMode"),
    (
        "stopTimeout above 120",
        lambda td: td["containerDefinitions"][0].update(stopTimeout=500),
        "stopTimeout",
    ),
    (
        "stopTimeout below drain + grace",
        lambda td: td["containerDefinitions"][0].update(stopTimeout=20),
        "stopTimeout",
    ),
    (
        "two routers",
        lambda td: td["containerDefinitions"].append(
            {**copy.deepcopy(container(td, "log-router")), "name": "log-router-2"}
        ),
        "firelensConfiguration",
    ),
    (
        "router config from S3",
        lambda td: container(td, "log-router")["firelensConfiguration"]["options"].update(
            {"config-file-type": "s3"}
        ),
        "firelensConfiguration.options",
    ),
    (
        "router not root",
        lambda td: container(td, "log-router").update(user="1000"),
        "log-router].user",
    ),
    (
        "router hard memory limit",
        lambda td: container(td, "log-router").update(memory=128),
        "log-router].memory",
    ),
    ("app as root", lambda td: td["containerDefinitions"][0].update(user="0"), "].user"),
    (
        "app root filesystem writable",
        lambda td: td["containerDefinitions"][0].update(readonlyRootFilesystem=False),
        "readonlyRootFilesystem",
    ),
    (
        "no /tmp volume",
        lambda td: td["containerDefinitions"][0].update(mountPoints=[]),
        "mountPoints",
    ),
    (
        "no init process",
        lambda td: td["containerDefinitions"][0].update(linuxParameters={}),
        "initProcessEnabled",
    ),
    (
        "secret in environment",
        lambda td: td["containerDefinitions"][0]["environment"].append(
            {"name": "DATABASE_PASSWORD", "value": "hunter2"}
        ),
        "environment.DATABASE_PASSWORD",
    ),
    (
        "credentials in a URL",
        lambda td: td["containerDefinitions"][0]["environment"].append(
            {"name": "DATABASE_URL", "value": "postgresql://app:pw@db/x"}
        ),
        "environment.DATABASE_URL",
    ),
    (
        "secret not from an ARN",
        lambda td: td["containerDefinitions"][0].update(
            secrets=[{"name": "DATABASE_PASSWORD", "valueFrom": "hunter2"}]
        ),
        "secrets.DATABASE_PASSWORD",
    ),
    (
        "database password authentication",
        lambda td: td["containerDefinitions"][0]["environment"].remove(
            {"name": "DATABASE_AUTH", "value": "iam"}
        ),
        "environment.DATABASE_AUTH",
    ),
    (
        "database without the CA bundle",
        lambda td: td["containerDefinitions"][0]["environment"].remove(
            {"name": "DATABASE_SSL_ROOT_CERT", "value": "/etc/ssl/certs/rds-global-bundle.pem"}
        ),
        "environment.DATABASE_SSL_ROOT_CERT",
    ),
    (
        "database password secret in the service",
        lambda td: td["containerDefinitions"][0].update(
            secrets=[
                {"name": "DATABASE_PASSWORD", "valueFrom": f"{ENV['DB_SECRET_ARN']}:password::"}
            ]
        ),
        "secrets.DATABASE_PASSWORD",
    ),
    (
        "latest tag",
        lambda td: td["containerDefinitions"][0].update(
            image="123.dkr.ecr.x.amazonaws.com/sbcntr-backend:latest"
        ),
        "].image",
    ),
    (
        "no tag",
        lambda td: container(td, "xray-daemon").update(image="public.ecr.aws/xray/aws-xray-daemon"),
        "xray-daemon].image",
    ),
    ("one role for both", lambda td: td.update(taskRoleArn=td["executionRoleArn"]), "taskRoleArn"),
    (
        "no log buffer limit",
        lambda td: td["containerDefinitions"][0]["logConfiguration"].update(options={}),
        "logConfiguration.options",
    ),
]


@pytest.mark.parametrize(
    ("case", "mutate", "field"),
    BROKEN_TASK_DEFINITIONS,
    ids=[c[0] for c in BROKEN_TASK_DEFINITIONS],
)
def test_verify_rejects_a_broken_task_definition(case: str, mutate: Mutation, field: str) -> None:
    td = copy.deepcopy(ecs.render("backend", ENV, TASKDEFS).task_definition)
    mutate(td)
    problems = verify.task_definition(td)
    assert problems, f"{case}: accepted"
    assert any(field in str(p) for p in problems), [str(p) for p in problems]


def test_verify_rejects_request_count_scaling_without_its_target_group() -> None:
    scaling = copy.deepcopy(ecs.render("frontend", ENV, TASKDEFS).scaling)
    metrics = scaling["policies"][1]["TargetTrackingScalingPolicyConfiguration"][
        "CustomizedMetricSpecification"
    ]["Metrics"]
    metrics[1]["MetricStat"]["Metric"]["Dimensions"].pop()
    found = ecs.problems(
        dataclasses.replace(ecs.render("frontend", ENV, TASKDEFS), scaling=scaling)
    )
    assert any("TargetGroup None is not targetgroup/" in str(p) for p in found), found


def test_verify_rejects_a_public_or_unguarded_service() -> None:
    sd = copy.deepcopy(ecs.render("frontend", ENV, TASKDEFS).service_definition)
    sd["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] = "ENABLED"
    sd["deploymentConfiguration"]["deploymentCircuitBreaker"]["rollback"] = False
    fields = {p.field for p in verify.service_definition(sd)}
    assert {
        "networkConfiguration.assignPublicIp",
        "deploymentConfiguration.deploymentCircuitBreaker",
    } <= fields


# --- no drift between docker-compose.yml and the task definitions

# Addresses differ by design: compose uses service names, ECS uses localhost
# (awsvpc) and load balancers; the database is SQLite locally.
ADDRESSES = {"AWS_XRAY_DAEMON_ADDRESS", "BACKEND_URL", "DATABASE_URL", "ENVIRONMENT"}
# The OTLP endpoint is an address too; TRACING_BACKEND is chosen by a variable
# on both sides (the task definition's variant: tests/tools/test_deploy_tracing.py).
ADDRESSES |= {"OTEL_EXPORTER_OTLP_ENDPOINT", "TRACING_BACKEND"}
# Compose publishes the frontend with no proxy in front and calls the backend
# by its compose name: the proxy count and the host names differ by design.
ADDRESSES |= {"TRUSTED_PROXIES", "ALLOWED_HOSTS"}


@pytest.mark.parametrize("service", SERVICES)
def test_compose_and_task_definitions_agree(service: str) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    td = ecs.render(service, ENV, TASKDEFS).task_definition
    task_app = app(td)
    task_env = {v["name"]: v["value"] for v in task_app["environment"]}
    compose_env = {k: str(v) for k, v in compose[service]["environment"].items()}
    only_compose = set(compose_env) - set(task_env) - ADDRESSES
    assert not only_compose, f"set in compose only: {only_compose}"
    for name in set(compose_env) & set(task_env) - ADDRESSES:
        assert compose_env[name] == task_env[name], name
    assert int(compose_env["PORT"]) == task_app["portMappings"][0]["containerPort"]
    assert compose[service]["healthcheck"]["test"][1:] == task_app["healthCheck"]["command"][1:]
    assert compose[service]["stop_grace_period"] == f"{task_app['stopTimeout']}s"
    router = container(td, "log-router")
    assert compose["log-router"]["stop_grace_period"] == f"{router['stopTimeout']}s"
    router_env = {v["name"] for v in router["environment"]}
    compose_router = set(compose["log-router"]["environment"]) - {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        # The emulator's HTTPS port and certificate: image defaults overridden locally.
        "CLOUDWATCH_PORT",
        "OUTPUT_TLS_VERIFY",
    }
    assert compose_router == router_env


def test_cli_render_names_missing_variables_and_verify_reports_problems(tmp_path: Path) -> None:
    missing = run_cli("render", "backend", env={"AWS_ACCOUNT_ID": "123456789012"})
    assert missing.returncode == 2
    assert "IMAGE_TAG" in missing.stderr
    assert "render failed" in missing.stderr
    ok = run_cli("verify", "frontend", "--offline", env=ENV)
    assert ok.returncode == 0, ok.stderr
    assert "frontend: verified" in ok.stdout
    broken = tmp_path / "taskdefs"
    shutil.copytree(TASKDEFS, broken)
    td = broken / "frontend" / "task-def.json"
    td.write_text(
        td.read_text().replace('"readonlyRootFilesystem": true', '"readonlyRootFilesystem": false')
    )
    bad = run_cli("verify", "frontend", "--offline", "--dir", str(broken), env=ENV)
    assert bad.returncode == 1
    assert "readonlyRootFilesystem: must be true" in bad.stderr
    assert "frontend: 1 problem\n" in bad.stdout  # not "1 problems"
    td.write_text(td.read_text().replace('"stopTimeout": 30', '"stopTimeout": 500'))
    worse = run_cli("verify", "frontend", "--offline", "--dir", str(broken), env=ENV)
    assert "frontend: 2 problems\n" in worse.stdout, worse.stderr


# --- rules AWS enforces after moto accepted the input


def test_verify_refuses_a_target_group_arn_as_the_metric_dimension() -> None:
    """AWS accepts the policy and its metric never has data (the service never scales on
    requests); moto accepts it too.

    Rule: the TargetGroup dimension of AWS/ApplicationELB is targetgroup/<name>/<id>, the
    end of the target group's ARN (Amazon CloudWatch User Guide, "Application Load
    Balancer metrics": dimensions).
    """
    env = {**ENV, "FRONTEND_TARGET_GROUP_FULL_NAME": ENV["FRONTEND_TARGET_GROUP_ARN"]}
    found = ecs.problems(ecs.render("frontend", env, TASKDEFS))
    assert {p.field for p in found} >= {
        "policies[sbcntr-frontend-requests].CustomizedMetricSpecification.Metrics[requests]"
        ".MetricStat.Metric.Dimensions"
    }
    assert any("(the end of the target group's ARN" in p.message for p in found)


@pytest.mark.parametrize("tag", ["a b", "-leading-dash", "x" * 129, "semi;colon"])
def test_verify_refuses_an_image_tag_registries_refuse(tag: str) -> None:
    """Tag grammar of the distribution reference (github.com/distribution/reference,
    reference.go: [\\w][\\w.-]{0,127}), which ECR applies on push and ECS on pull."""
    td = ecs.render("backend", {**ENV, "IMAGE_TAG": tag}, TASKDEFS).task_definition
    fields = {p.field for p in verify.task_definition(td)}
    assert "containerDefinitions[backend].image" in fields
    assert "containerDefinitions[log-router].image" in fields


def test_scaling_json_is_valid_application_auto_scaling_input() -> None:
    """Numbers are JSON numbers: each entry is fit for the API as it is."""
    env = {**ENV, "SCALE_TO_ZERO_OUTSIDE_HOURS": "true", "MIN_TASKS": "3"}
    config = ecs.render("backend", env, TASKDEFS).scaling
    assert config["scalableTarget"] == {"MinCapacity": 3, "MaxCapacity": 6}
    assert config["scheduledActionsEnabled"] is True
    requests = config["policies"][1]["TargetTrackingScalingPolicyConfiguration"]
    assert requests["TargetValue"] == 600
    assert verify.scaling(config) == []
    config["scalableTarget"]["MinCapacity"] = "3"
    assert [p.field for p in verify.scaling(config)] == ["scalableTarget"]


def test_log_buffer_limit_counts_lines_within_the_task_memory() -> None:
    """AWS: log-driver-buffer-limit is a number of log lines (default 1048576,
    below 536870912), and its memory is lines x line size on top of the
    containers' (Amazon ECS Developer Guide, "Configuring Amazon ECS logs for
    high throughput", firelens-docker-buffer-limit.html)."""
    td = ecs.render("backend", ENV, TASKDEFS).task_definition
    limit = int(
        td["containerDefinitions"][0]["logConfiguration"]["options"]["log-driver-buffer-limit"]
    )
    assert limit * verify.MAX_LOG_LINE_BYTES <= int(td["memory"]) * 1024 * 1024 / 16
    td["containerDefinitions"][0]["logConfiguration"]["options"]["log-driver-buffer-limit"] = (
        "2097152"
    )
    problems = [str(p) for p in verify.task_definition(td)]
    assert any("log-driver-buffer-limit" in p and "lines" in p for p in problems), problems


# --- roles and policies per service and environment


@pytest.mark.parametrize("service", SERVICES)
def test_task_definitions_use_the_roles_the_policies_are_for(service: str) -> None:
    env = {**ENV, "ENV_NAME": "stg"}
    td = ecs.render(service, env, TASKDEFS).task_definition
    names = iam.role_names(service, env, TASKDEFS)
    migration = {"migrate": f"sbcntr-stg-{service}-migrate"} if service == "backend" else {}
    assert names == {
        "execution": f"sbcntr-stg-{service}-execution",
        "task": f"sbcntr-stg-{service}-task",
        **migration,
    }
    assert td["executionRoleArn"] == f"arn:aws:iam::123456789012:role/{names['execution']}"
    assert td["taskRoleArn"] == f"arn:aws:iam::123456789012:role/{names['task']}"
    if migration:
        assert migrate.migration_role_arn(td["taskRoleArn"]) == (
            f"arn:aws:iam::123456789012:role/{names['migrate']}"
        )
    policies = iam.render(service, env, TASKDEFS)
    assert set(policies) == set(names.values())


def _actions(policy: dict[str, Any]) -> set[str]:
    found = set()
    for statement in policy["Statement"]:
        actions = statement["Action"]
        found |= {actions} if isinstance(actions, str) else set(actions)
    return found


def test_only_the_migration_role_reads_the_database_secret() -> None:
    """The service's tasks hold no database password: no secret in the task definition,
    none readable by its roles; the migration task's own role reads the owner's."""
    read = {"secretsmanager:GetSecretValue", "kms:Decrypt"}
    policies = {**iam.render("frontend", ENV, TASKDEFS), **iam.render("backend", ENV, TASKDEFS)}
    for role, policy in policies.items():
        if role == "sbcntr-dev-backend-migrate":
            assert read <= _actions(policy)
            assert ENV["DB_SECRET_ARN"] in json.dumps(policy)
            assert ENV["SECRETS_KMS_KEY_ARN"] in json.dumps(policy)
        else:
            assert not read & _actions(policy), role
            assert ENV["DB_SECRET_ARN"] not in json.dumps(policy), role
    for service in SERVICES:
        td = ecs.render(service, ENV, TASKDEFS).task_definition
        assert all("secrets" not in c for c in td["containerDefinitions"]), service


@pytest.mark.parametrize("service", SERVICES)
def test_execution_role_may_pull_every_image_of_its_task(service: str) -> None:
    td = ecs.render(service, ENV, TASKDEFS).task_definition
    policy = iam.render(service, ENV, TASKDEFS)[f"sbcntr-dev-{service}-execution"]
    pull = next(s for s in policy["Statement"] if s["Sid"] == "PullImages")["Resource"]
    for container in td["containerDefinitions"]:
        repository = verify.image_parts(container["image"])[0].split("/", 1)[1]
        assert f"arn:aws:ecr:ap-northeast-1:123456789012:repository/{repository}" in pull


def test_xray_daemon_comes_from_the_account_mirror() -> None:
    """An endpoints-only VPC reaches ECR in the account, never public.ecr.aws."""
    for service in SERVICES:
        xray = container(ecs.render(service, ENV, TASKDEFS).task_definition, "xray-daemon")
        assert xray["image"] == (
            "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/"
            "ecr-public/xray/aws-xray-daemon:3.3.15"
        )


def test_render_iam_prints_both_policies_and_names_what_is_missing() -> None:
    done = run_cli("render-iam", "backend", env=ENV)
    assert done.returncode == 0, done.stderr
    policies = json.loads(done.stdout)
    assert set(policies) == {
        "sbcntr-dev-backend-execution",
        "sbcntr-dev-backend-task",
        "sbcntr-dev-backend-migrate",
    }
    env = {k: v for k, v in ENV.items() if k != "SECRETS_KMS_KEY_ARN"}
    missing = run_cli("render-iam", "backend", env=env)
    assert missing.returncode == 2
    assert "SECRETS_KMS_KEY_ARN" in missing.stderr
    assert run_cli("render-iam", "frontend", env=env).returncode == 0


def test_compose_runs_the_xray_daemon_version_the_tasks_pull() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    local = next(s["image"] for s in compose.values() if "xray-daemon" in s.get("image", ""))
    for service in SERVICES:
        xray = container(ecs.render(service, ENV, TASKDEFS).task_definition, "xray-daemon")
        assert verify.image_parts(xray["image"])[1] == verify.image_parts(local)[1]


# parliament's action data predates resource-level permissions for this
# action; the Service Authorization Reference lists BatchImportUpstreamImage
# with resource type repository* (list_amazonelasticcontainerregistry.html).
OUTDATED_LINT = {("RESOURCE_MISMATCH", "ecr:BatchImportUpstreamImage")}


def lint(policy: dict[str, Any]) -> list[tuple[str, str]]:
    findings = analyze_policy_string(json.dumps(policy)).findings
    found = [(f.issue, str(f.detail)) for f in findings]
    return [(i, d) for i, d in found if not any(i == o and a in d for o, a in OUTDATED_LINT)]


@pytest.mark.parametrize("service", SERVICES)
def test_role_policies_pass_an_iam_linter(service: str) -> None:
    for role, policy in iam.render(service, ENV, TASKDEFS).items():
        assert lint(policy) == [], role
    task = iam.render(service, ENV, TASKDEFS)[f"sbcntr-dev-{service}-task"]
    task["Statement"][0]["Action"] = ["logs:PutLogEvent"]  # the linter does catch a typo
    assert [issue for issue, _ in lint(task)] == ["UNKNOWN_ACTION"]


@pytest.mark.parametrize("requests", ["0", "0.5"])
def test_verify_refuses_fewer_than_one_request_per_target(requests: str) -> None:
    """ALBRequestCountPerTarget counts whole requests per target per minute (Elastic Load
    Balancing, CloudWatch metrics for your Application Load Balancer): a target below 1
    keeps the service at its maximum. AWS refuses 0 only at PutScalingPolicy, after the
    service was updated; moto takes both."""
    env = {**ENV, "REQUESTS_PER_TARGET": requests}
    found = ecs.problems(ecs.render("frontend", env, TASKDEFS))
    assert [p.field for p in found] == ["policies[sbcntr-frontend-requests].TargetValue"]
    assert "at least 1" in found[0].message
    assert ecs.problems(ecs.render("frontend", {**ENV, "REQUESTS_PER_TARGET": "1"}, TASKDEFS)) == []


def test_verify_refuses_scaling_on_another_services_target_group() -> None:
    """The frontend's metric naming the backend's target group: valid for AWS, and
    the frontend would then scale on the backend's requests."""
    env = {**ENV, "FRONTEND_TARGET_GROUP_FULL_NAME": ENV["BACKEND_TARGET_GROUP_FULL_NAME"]}
    found = ecs.problems(ecs.render("frontend", env, TASKDEFS))
    where = "policies[sbcntr-frontend-requests].CustomizedMetricSpecification.Metrics"
    assert [p.field for p in found] == [where, where]
    assert found[0].message.startswith(
        "RequestCount of targetgroup/back/2, not of the service's target groups "
        "(targetgroup/front/1)"
    )


def test_a_third_subnet_is_used_when_the_network_has_one() -> None:
    """PRIVATE_SUBNET_3 (AzCount=3) joins the service's subnets; unset, the list has two
    (the `if` block renders as ecspresso's Go template does)."""
    two = ecs.render("backend", ENV, TASKDEFS).service_definition
    three = ecs.render("frontend", {**ENV, "PRIVATE_SUBNET_3": "subnet-0ccc"}, TASKDEFS)
    subnets = three.service_definition["networkConfiguration"]["awsvpcConfiguration"]["subnets"]
    assert subnets == ["subnet-0aaa", "subnet-0bbb", "subnet-0ccc"]
    assert two["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == [
        "subnet-0aaa",
        "subnet-0bbb",
    ]
    empty = ecs.render("backend", {**ENV, "PRIVATE_SUBNET_3": ""}, TASKDEFS).service_definition
    assert empty == two
