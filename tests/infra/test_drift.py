"""The stacks and the task definitions agree.

Every variable the taskdefs `must_env` is a stack output (or derived, or named as
the user's); every log group, role and repository the taskdefs name is created
by the templates; the roles' policies are exactly the files in taskdefs/iam/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from backend.roles import APP_ROLE
from sbcntrctl.deploy import ecs, template
from sbcntrctl.infra.stacks import DERIVED, FROM_OUTPUTS, USER_SUPPLIED
from sbcntrctl.release.images import IMAGES
from tests.infra.cfn import resolve, resources
from tests.infra.cfn import template as load
from tests.infra.iam import allows
from tests.support import ROOT

TASKDEFS = ROOT / "taskdefs"
ACCOUNT, REGION, ENV_NAME = "123456789012", "ap-northeast-1", "dev"
# What the stacks would output, as fixed strings: the taskdefs rendered with these
# must name exactly what the templates (resolved with the same values) create.
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:sbcntr/dev/database-AbCdEf"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0000-secrets"
LOG_BUCKET = f"sbcntr-{ENV_NAME}-logs-{ACCOUNT}-{REGION}"
RENDER_ENV = {
    **{name: f"<{name}>" for name in FROM_OUTPUTS},
    "AWS_ACCOUNT_ID": ACCOUNT,
    "AWS_REGION": REGION,
    "ENV_NAME": ENV_NAME,
    "IMAGE_TAG": "dev-0a1b2c3",
    "LOG_BUCKET": LOG_BUCKET,
    "DB_SECRET_ARN": SECRET_ARN,
    "SECRETS_KMS_KEY_ARN": KEY_ARN,
}
NAMES = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "EnvName": ENV_NAME,
    "LogBucket": LOG_BUCKET,
    "DatabaseSecret": SECRET_ARN,
    "SecretsKey.Arn": KEY_ARN,
}
# The policy file of each role (CONTRACTS: one execution and one task role per service).
POLICY_FILES = {
    "sbcntr-dev-frontend-execution": "execution-role-policy-frontend.json",
    "sbcntr-dev-backend-execution": "execution-role-policy-backend.json",
    "sbcntr-dev-frontend-task": "task-role-policy-frontend.json",
    "sbcntr-dev-backend-task": "task-role-policy-backend.json",
    "sbcntr-dev-backend-migrate": "migrate-role-policy-backend.json",
}


def taskdef_files() -> list[Path]:
    return sorted(p for p in TASKDEFS.rglob("*") if p.suffix in (".json", ".yml"))


_MUST_ENV = re.compile(r"\{\{-?\s*must_env\s+`([A-Za-z_][A-Za-z0-9_]*)`")
_ENV_DEFAULT = re.compile(r"\{\{-?\s*env\s+`([A-Za-z_][A-Za-z0-9_]*)`\s+`([^`]*)`")


def must_env() -> dict[str, list[str]]:
    """Each `must_env` variable of taskdefs/ and the files that need it."""
    found: dict[str, list[str]] = {}
    for path in taskdef_files():
        for name in _MUST_ENV.findall(path.read_text()):
            files = found.setdefault(name, [])
            if str(path.relative_to(ROOT)) not in files:
                files.append(str(path.relative_to(ROOT)))
    return found


def test_every_must_env_variable_comes_from_a_stack_or_is_named_as_the_users() -> None:
    needed = must_env()
    assert needed, "the taskdefs need variables"
    unaccounted = {
        name: files
        for name, files in needed.items()
        if name not in FROM_OUTPUTS and name not in DERIVED and name not in USER_SUPPLIED
    }
    assert unaccounted == {}
    unused = sorted(set(FROM_OUTPUTS) - set(needed))
    assert unused == [], "stack outputs mapped to variables no taskdef reads"


@pytest.mark.parametrize(("variable", "source"), sorted(FROM_OUTPUTS.items()))
def test_each_mapped_output_exists_in_its_template(variable: str, source: tuple[str, str]) -> None:
    stack, output = source
    assert output in load(stack)["Outputs"], f"{variable}: {stack}.yml has no output {output}"


# Each service's task definition with either tracing sidecar: the X-Ray daemon
# (default) and the OpenTelemetry collector (TRACING_BACKEND=otel).
TRACING_BACKENDS = ("xray-sdk", "otel")


def rendered_task_definitions() -> dict[tuple[str, str], dict[str, Any]]:
    """(service, tracing backend) -> the task definition a deploy would register."""
    return {
        (service, backend): ecs.render(
            service, {**RENDER_ENV, "TRACING_BACKEND": backend}, TASKDEFS
        ).task_definition
        for service in ("frontend", "backend")
        for backend in TRACING_BACKENDS
    }


def test_both_tracing_variants_are_rendered() -> None:
    names = {
        key: {c["name"] for c in td["containerDefinitions"]}
        for key, td in rendered_task_definitions().items()
    }
    assert {"xray-daemon"} <= names["backend", "xray-sdk"] - names["backend", "otel"]
    assert {"otel-collector"} <= names["frontend", "otel"] - names["frontend", "xray-sdk"]


def awslogs_groups(td: dict[str, Any]) -> dict[str, str]:
    """Container name -> the log group it writes to with the awslogs driver."""
    return {
        c["name"]: c["logConfiguration"]["options"]["awslogs-group"]
        for c in td["containerDefinitions"]
        if c.get("logConfiguration", {}).get("logDriver") == "awslogs"
    }


def test_log_groups_the_tasks_write_to_are_created() -> None:
    platform = load("platform")
    created = {
        resolve(g["Properties"]["LogGroupName"], NAMES)
        for g in resources(platform, "AWS::Logs::LogGroup").values()
    }
    used = set()
    for (service, _), td in rendered_task_definitions().items():
        for container in td["containerDefinitions"]:
            options = container.get("logConfiguration", {}).get("options", {})
            if "awslogs-group" in options:
                used.add(options["awslogs-group"])
            env = {e["name"]: e["value"] for e in container.get("environment", [])}
            used.update(v for k, v in env.items() if k.endswith(("_LOG_GROUP", "LOG_GROUP_NAME")))
            if "LOG_GROUP_PREFIX" in env:  # FireLens writes <prefix>/<service>
                used.add(f"{env['LOG_GROUP_PREFIX']}/{service}")
    assert used, "the task definitions name log groups"
    assert used <= created, f"not created by platform.yml: {sorted(used - created)}"


def test_repositories_the_tasks_pull_from_are_created_or_mirrored() -> None:
    """Own images from the registry's repositories; public ones through the pull-through cache
    (``<registry>/<prefix>/<upstream path>``) or, before the task definitions name that
    path, at least with a cache rule for their upstream registry."""
    registry = load("registry")
    created = {
        r["Properties"]["RepositoryName"]
        for r in resources(registry, "AWS::ECR::Repository").values()
    }
    caches = {
        r["Properties"]["EcrRepositoryPrefix"]: r["Properties"]["UpstreamRegistryUrl"]
        for r in resources(registry, "AWS::ECR::PullThroughCacheRule").values()
    }
    private = re.compile(rf"^{ACCOUNT}\.dkr\.ecr\.{REGION}\.amazonaws\.com/([^:]+):")
    for td in rendered_task_definitions().values():
        for container in td["containerDefinitions"]:
            image = container["image"]
            match = private.match(image)
            if match:
                repository = match.group(1)
                cached = repository.split("/", 1)[0] in caches and "/" in repository
                assert repository in created or cached, image
            else:
                assert image.split("/", 1)[0] in caches.values(), f"{image}: not mirrored"


def test_the_registry_holds_a_repository_for_each_release_image_and_no_other() -> None:
    """The one list of images (sbcntrctl.release.images) is what the registry creates."""
    created = {
        r["Properties"]["RepositoryName"]
        for r in resources(load("registry"), "AWS::ECR::Repository").values()
    }
    assert created == {image.repository for image in IMAGES.values()}


def test_without_internet_every_image_comes_from_the_private_registry() -> None:
    private = re.compile(rf"^{ACCOUNT}\.dkr\.ecr\.{REGION}\.amazonaws\.com/")
    public = [
        c["image"]
        for td in rendered_task_definitions().values()
        for c in td["containerDefinitions"]
        if not private.match(c["image"])
    ]
    assert public == []


def platform_roles() -> dict[str, dict[str, Any]]:
    """Role name -> its resolved inline policies (name -> document)."""
    roles = {}
    for role in resources(load("platform"), "AWS::IAM::Role").values():
        props = role["Properties"]
        roles[resolve(props["RoleName"], NAMES)] = {
            p["PolicyName"]: resolve(p["PolicyDocument"], NAMES) for p in props.get("Policies", [])
        }
    return roles


def test_roles_the_tasks_use_are_created() -> None:
    created = platform_roles()
    for (service, _), td in rendered_task_definitions().items():
        for key in ("executionRoleArn", "taskRoleArn"):
            name = td[key].rsplit("/", 1)[1]
            assert name in created, f"{service} {key}: {name} is not created by platform.yml"


# What the ECS agent does with the execution role for a container (Amazon ECS developer
# guide, "Amazon ECS task execution IAM role"): pull its image from a private repository,
# and with the awslogs driver create the task's log stream and put its events.
PULL = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
AWSLOGS = ("logs:CreateLogStream", "logs:PutLogEvents")


def execution_role_gaps(td: dict[str, Any], policy: dict[str, Any]) -> list[str]:
    """The pulls and awslogs writes of ``td`` that ``policy`` does not allow."""
    private = re.compile(rf"^{ACCOUNT}\.dkr\.ecr\.{REGION}\.amazonaws\.com/([^:@]+)")
    gaps = []
    for container in td["containerDefinitions"]:
        match = private.match(container["image"])
        if match:
            arn = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{match.group(1)}"
            gaps += [f"{a} {arn}" for a in PULL if not allows(policy, a, arn)]
    for name, group in awslogs_groups(td).items():
        stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:x/{name}/0123"
        gaps += [f"{a} {stream}" for a in AWSLOGS if not allows(policy, a, stream)]
    return gaps


@pytest.mark.parametrize(("service", "backend"), sorted(rendered_task_definitions()))
def test_execution_role_pulls_every_image_and_writes_every_awslogs_group(
    service: str, backend: str
) -> None:
    """With either tracing sidecar: the role is the same, only the task definition changes."""
    td = rendered_task_definitions()[service, backend]
    role = f"sbcntr-{ENV_NAME}-{service}-execution"
    (policy,) = platform_roles()[role].values()
    assert execution_role_gaps(td, policy) == []


def test_execution_role_check_names_what_is_missing() -> None:
    td = rendered_task_definitions()["backend", "otel"]
    (policy,) = platform_roles()[f"sbcntr-{ENV_NAME}-backend-execution"].values()
    for statement in policy["Statement"]:
        if isinstance(statement["Resource"], list):
            statement["Resource"] = [r for r in statement["Resource"] if "otel-collector" not in r]
    repository = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/sbcntr-otel-collector"
    stream = (
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/sbcntr/{ENV_NAME}/otel-collector"
        ":log-stream:x/otel-collector/0123"
    )
    assert execution_role_gaps(td, policy) == [
        f"ecr:BatchGetImage {repository}",
        f"ecr:GetDownloadUrlForLayer {repository}",
        f"logs:CreateLogStream {stream}",
        f"logs:PutLogEvents {stream}",
    ]
    assert not allows(policy, "logs:CreateLogStream", "arn:aws:logs:x:y:log-group:/other:*")
    assert allows(policy, "ecr:GetAuthorizationToken", "*")


@pytest.mark.parametrize("role", sorted(POLICY_FILES))
def test_role_policy_is_exactly_its_taskdefs_file(role: str) -> None:
    path = TASKDEFS / "iam" / POLICY_FILES[role]
    expected = template.render_json(path, RENDER_ENV)
    policies = platform_roles()[role]
    assert list(policies.values()) == [expected], json.dumps(policies, indent=1)


def test_policy_comparison_sees_a_difference() -> None:
    """The comparison above is exact: one action more in the template is a difference."""
    role = "sbcntr-dev-backend-task"
    expected = template.render_json(TASKDEFS / "iam" / POLICY_FILES[role], RENDER_ENV)
    policies = platform_roles()[role]
    assert list(policies.values()) == [expected]
    policies["task"]["Statement"][0]["Action"].append("logs:DeleteLogGroup")
    assert list(policies.values()) != [expected]


def test_capacity_providers_the_services_may_name_are_associated() -> None:
    """AWS requires the association before a service's strategy names a provider
    (moto does not check it). The taskdefs default to FARGATE; their README offers
    FARGATE_SPOT for non-production."""
    cluster = resources(load("platform"), "AWS::ECS::Cluster")
    (props,) = (c["Properties"] for c in cluster.values())
    associated = set(props["CapacityProviders"])
    defaults = dict(_ENV_DEFAULT.findall((TASKDEFS / "backend" / "service-def.json").read_text()))
    default = defaults["CAPACITY_PROVIDER"]
    assert {default, "FARGATE_SPOT"} <= associated
    assert "FARGATE_SPOT" in (TASKDEFS / "README.md").read_text()


def _exports_and_imports() -> tuple[set[str], set[str]]:
    exported, imported = set(), set()
    for path in sorted((ROOT / "infra").glob("*.yml")):
        tpl = load(path.stem)
        for output in tpl.get("Outputs", {}).values():
            name = output.get("Export", {}).get("Name")
            if name is not None:
                exported.add(name["Fn::Sub"] if isinstance(name, dict) else name)
        text = json.dumps(tpl["Resources"])
        imported.update(re.findall(r'"Fn::ImportValue": \{"Fn::Sub": "([^"]+)"\}', text))
    return exported, imported


def test_every_export_imported_by_a_template_or_a_tool_is_exported() -> None:
    """monitoring.yml and `sbcntrctl capacity --cloudwatch` read the edge stack's exports."""
    exported, imported = _exports_and_imports()
    assert imported, "the templates import exports"
    tools = ROOT / "tools" / "src" / "sbcntrctl"
    for source in tools.rglob("*.py"):
        for name in re.findall(r'f"sbcntr-\{[^}]+\}-([A-Za-z0-9]+)"', source.read_text()):
            imported.add("sbcntr-${EnvName}-" + name)
    assert "sbcntr-${EnvName}-PublicAlbFullName" in imported
    assert sorted(imported - exported) == []


# The database's resource id per engine, as the data stack's GetAtt would return it.
RESOURCE_IDS = {True: "cluster-ABCDEFGHIJKLMNOP", False: "db-ABCDEFGHIJKLMNOP"}


def data_names(aurora: bool) -> dict[str, Any]:
    return {
        **NAMES,
        "Condition:IsAurora": aurora,
        "AuroraCluster.DBClusterResourceId": RESOURCE_IDS[True],
        "RdsInstance.DbiResourceId": RESOURCE_IDS[False],
        "AuroraCluster.Endpoint.Address": "sbcntr-dev.cluster-x.ap-northeast-1.rds.amazonaws.com",
        "RdsInstance.Endpoint.Address": "sbcntr-dev.x.ap-northeast-1.rds.amazonaws.com",
    }


@pytest.mark.parametrize("aurora", [True, False], ids=["aurora", "rds"])
def test_database_connect_policy_is_exactly_its_taskdefs_file(aurora: bool) -> None:
    """The data stack attaches rds-db:connect for the service's role to the backend task role.

    Amazon RDS User Guide, "Creating and using an IAM policy for IAM database
    access": the resource is ``arn:aws:rds-db:<region>:<account>:dbuser:<resource
    id>/<user>``, the resource id being the cluster's (Aurora) or the instance's.
    """
    data = load("data")
    (policy,) = resources(data, "AWS::IAM::RolePolicy").values()
    props = resolve(policy["Properties"], data_names(aurora))
    assert props["RoleName"] == "sbcntr-dev-backend-task"
    assert props["RoleName"] in platform_roles()
    env = {**RENDER_ENV, "DB_RESOURCE_ID": RESOURCE_IDS[aurora]}
    expected = template.render_json(TASKDEFS / "iam" / "database-policy-backend.json", env)
    assert props["PolicyDocument"] == expected
    outputs = {
        name: resolve(data["Outputs"][name]["Value"], data_names(aurora))
        for name in ("DatabaseResourceId", "DatabaseUrl")
    }
    assert outputs["DatabaseResourceId"] == RESOURCE_IDS[aurora]
    user = make_url(outputs["DatabaseUrl"]).username
    assert user == APP_ROLE

    db_user = f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{RESOURCE_IDS[aurora]}"
    assert allows(expected, "rds-db:connect", f"{db_user}/{APP_ROLE}")
    # The master user (the schema's owner), another database, another action: refused.
    assert not allows(expected, "rds-db:connect", f"{db_user}/app")
    assert not allows(expected, "rds-db:connect", f"{db_user}x/{APP_ROLE}")
    assert not allows(expected, "rds-db:*", f"{db_user}/{APP_ROLE}")


def test_the_backend_logs_in_with_iam_over_tls_with_the_ca_bundle_of_its_image() -> None:
    td = ecs.render("backend", RENDER_ENV, TASKDEFS).task_definition
    backend = next(c for c in td["containerDefinitions"] if c["name"] == "backend")
    env = {e["name"]: e["value"] for e in backend["environment"]}
    assert env["DATABASE_AUTH"] == "iam"
    assert env["DATABASE_OWNER_CREDENTIALS_ARN"] == SECRET_ARN
    assert "secrets" not in backend
    dockerfile = (ROOT / "Dockerfile.backend").read_text()
    assert re.search(rf"^COPY .* {re.escape(env['DATABASE_SSL_ROOT_CERT'])}$", dockerfile, re.M)
    for engine in ("AuroraCluster", "RdsInstance"):
        props = load("data")["Resources"][engine]["Properties"]
        assert props["EnableIAMDatabaseAuthentication"] is True, engine
