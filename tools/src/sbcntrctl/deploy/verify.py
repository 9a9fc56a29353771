"""Checks of rendered task, service and scaling definitions, before AWS sees them.

First the ECS API model that botocore ships (types, required and unknown
keys), then the rules the model, and moto, do not enforce, each reported with
the field it concerns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

# Fields that describe-task-definition returns and register does not take.
DESCRIBE_ONLY = (
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
)
DEPENDS_ON_CONDITIONS = {"START", "COMPLETE", "SUCCESS", "HEALTHY"}
PROTOCOLS = {"tcp", "udp"}
MAX_STOP_TIMEOUT = 120
# log-driver-buffer-limit counts log lines (AWS: default 1048576, below
# 536870912); the buffer takes up to lines x line size of the task's memory.
# Docker splits a line at 16 KiB, so that is the size of the largest entry; the
# buffer may take at most 1/16 of the task's memory at that size.
MAX_LOG_LINE_BYTES = 16 * 1024
LOG_BUFFER_LIMIT_BELOW = 536870912
LOG_BUFFER_SHARE = 16
# Fargate task sizes: cpu units -> allowed memory (MiB).
FARGATE_SIZES: dict[int, set[int]] = {
    256: {512, 1024, 2048},
    512: set(range(1024, 4097, 1024)),
    1024: set(range(2048, 8193, 1024)),
    2048: set(range(4096, 16385, 1024)),
    4096: set(range(8192, 30721, 1024)),
    8192: set(range(16384, 61441, 4096)),
    16384: set(range(32768, 122881, 8192)),
}
# The image reference grammar of the distribution project (reference.go), which
# ECR and Docker enforce: lowercase repository path components, a tag of at most
# 128 word characters, dots and dashes not starting with either, or a digest.
_REPOSITORY = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|PRIVATE_KEY|API_KEY|ACCESS_KEY(?!_ID))", re.I)
_SECRET_VALUE = re.compile(r"(AKIA[0-9A-Z]{16}|://[^/\s:@]+:[^/\s@]+@|-----BEGIN)")


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _model_problems(
    operation: str, params: dict[str, Any], service: str = "ecs", where: str = ""
) -> list[Problem]:
    model = botocore.session.get_session().get_service_model(service)
    shape = model.operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    if not report.has_errors():
        return []
    lines = report.generate_report().splitlines()
    return [
        Problem(where or operation, line.strip())
        for line in lines
        if line.strip() and not line.startswith("Parameter validation failed")
    ]


def task_definition(td: dict[str, Any]) -> list[Problem]:
    """Every problem of a rendered task definition; empty when it is fit to register."""
    params = {k: v for k, v in td.items() if k not in DESCRIBE_ONLY}
    problems = _model_problems("RegisterTaskDefinition", params)
    if problems:
        return problems  # the rules below assume the model's shape
    unnamed = [
        i
        for i, c in enumerate(td["containerDefinitions"])
        if not c.get("name") or not c.get("image")
    ]
    if unnamed:
        return [
            Problem(f"containerDefinitions[{i}].name/image", "both are required") for i in unnamed
        ]
    containers = {c["name"]: c for c in td["containerDefinitions"]}
    problems += _fargate(td)
    routers = [c for c in containers.values() if "firelensConfiguration" in c]
    problems += _routers(routers)
    for name, c in containers.items():
        where = f"containerDefinitions[{name}]"
        problems += _container(
            where, c, containers, is_router=c in routers, task_memory=_memory(td)
        )
    return problems


def _memory(td: dict[str, Any]) -> int:
    try:
        return int(td.get("memory", 0))
    except ValueError:
        return 0


def _fargate(td: dict[str, Any]) -> list[Problem]:
    found = []
    if td.get("requiresCompatibilities") != ["FARGATE"]:
        found.append(Problem("requiresCompatibilities", 'must be ["FARGATE"]'))
    if td.get("networkMode") != "awsvpc":
        found.append(Problem("networkMode", "Fargate requires awsvpc"))
    try:
        cpu, memory = int(td.get("cpu", "")), int(td.get("memory", ""))
    except ValueError:
        return [*found, Problem("cpu/memory", "both must be set as numbers")]
    if memory not in FARGATE_SIZES.get(cpu, set()):
        found.append(
            Problem("cpu/memory", f"{cpu} CPU units with {memory} MiB is not a Fargate size")
        )
    platform = td.get("runtimePlatform", {})
    if platform.get("cpuArchitecture") not in ("X86_64", "ARM64"):
        found.append(Problem("runtimePlatform.cpuArchitecture", "must be X86_64 or ARM64"))
    if not td.get("executionRoleArn") or not td.get("taskRoleArn"):
        found.append(Problem("executionRoleArn/taskRoleArn", "both roles are required"))
    elif td["executionRoleArn"] == td["taskRoleArn"]:
        found.append(Problem("taskRoleArn", "use a role separate from the execution role"))
    return found


def _routers(routers: list[dict[str, Any]]) -> list[Problem]:
    if len(routers) != 1:
        return [Problem("firelensConfiguration", f"exactly one log router, found {len(routers)}")]
    router = routers[0]
    where = f"containerDefinitions[{router['name']}]"
    found = []
    options = router["firelensConfiguration"].get("options", {})
    if router["firelensConfiguration"].get("type") != "fluentbit":
        found.append(Problem(f"{where}.firelensConfiguration.type", "must be fluentbit"))
    if options.get("config-file-type") != "file":
        found.append(
            Problem(f"{where}.firelensConfiguration.options", "Fargate needs config-file-type file")
        )
    if options.get("config-file-value") == "/fluent-bit/etc/fluent-bit.conf":
        found.append(Problem(f"{where}.firelensConfiguration.options", "FireLens writes that file"))
    if router.get("user") != "0":
        found.append(Problem(f"{where}.user", "the FireLens router must run as user 0"))
    if "memory" in router:
        found.append(
            Problem(f"{where}.memory", "no hard limit on the router: use memoryReservation")
        )
    if not router.get("essential", True):
        found.append(Problem(f"{where}.essential", "the log router must be essential"))
    return found


def _container(
    where: str,
    c: dict[str, Any],
    containers: dict[str, Any],
    *,
    is_router: bool,
    task_memory: int,
) -> list[Problem]:
    found = []
    found += _image(f"{where}.image", c.get("image", ""))
    timeout = c.get("stopTimeout")
    if timeout is not None and not 2 <= timeout <= MAX_STOP_TIMEOUT:
        found.append(Problem(f"{where}.stopTimeout", f"{timeout} is outside 2..{MAX_STOP_TIMEOUT}"))
    for dep in c.get("dependsOn", []):
        if dep.get("condition") not in DEPENDS_ON_CONDITIONS:
            found.append(
                Problem(
                    f"{where}.dependsOn.condition",
                    f"{dep.get('condition')!r} is not one of {sorted(DEPENDS_ON_CONDITIONS)}",
                )
            )
        target = containers.get(dep.get("containerName"))
        if target is None:
            found.append(
                Problem(
                    f"{where}.dependsOn.containerName", f"no container {dep.get('containerName')!r}"
                )
            )
        elif dep.get("condition") == "HEALTHY" and "healthCheck" not in target:
            found.append(
                Problem(f"{where}.dependsOn", f"{target['name']} has no healthCheck for HEALTHY")
            )
    for mapping in c.get("portMappings", []):
        if mapping.get("protocol", "tcp") not in PROTOCOLS:
            found.append(
                Problem(
                    f"{where}.portMappings.protocol",
                    f"{mapping.get('protocol')!r} is not tcp or udp",
                )
            )
    for variable in c.get("environment", []):
        name, value = variable.get("name", ""), str(variable.get("value", ""))
        if _SECRET_NAME.search(name) or _SECRET_VALUE.search(value):
            found.append(
                Problem(
                    f"{where}.environment.{name}", "looks like a secret: use secrets with valueFrom"
                )
            )
    for secret in c.get("secrets", []):
        if not str(secret.get("valueFrom", "")).startswith(
            ("arn:aws:secretsmanager:", "arn:aws:ssm:")
        ):
            found.append(
                Problem(
                    f"{where}.secrets.{secret.get('name')}",
                    "valueFrom must be a Secrets Manager or SSM parameter ARN",
                )
            )
    if (
        c.get("essential", True)
        and not is_router
        and c.get("logConfiguration", {}).get("logDriver") == "awsfirelens"
    ):
        found += _app_container(where, c)
        found += _log_buffer(where, c["logConfiguration"].get("options", {}), task_memory)
    return found


def _log_buffer(where: str, options: dict[str, Any], task_memory: int) -> list[Problem]:
    value = options.get("log-driver-buffer-limit")
    if value is None:
        return [Problem(f"{where}.logConfiguration.options", "set log-driver-buffer-limit")]
    field = f"{where}.logConfiguration.options.log-driver-buffer-limit"
    try:
        lines = int(value)
    except ValueError:
        return [Problem(field, f"{value!r} is not a number of lines")]
    if not 0 <= lines < LOG_BUFFER_LIMIT_BELOW:
        return [Problem(field, f"{lines} lines is outside 0..{LOG_BUFFER_LIMIT_BELOW - 1}")]
    budget = task_memory * 1024 * 1024 // LOG_BUFFER_SHARE
    if lines * MAX_LOG_LINE_BYTES > budget:
        return [
            Problem(
                field,
                f"{lines} lines of up to 16 KiB need {lines * MAX_LOG_LINE_BYTES // 2**20} MiB, "
                f"more than 1/{LOG_BUFFER_SHARE} of the task's {task_memory} MiB: "
                f"at most {budget // MAX_LOG_LINE_BYTES} lines",
            )
        ]
    return []


def image_parts(image: str) -> tuple[str, str, str]:
    """``(registry/repository, tag, digest)`` of an image reference ('' when absent)."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], digest
    return name, "", digest


def _image(where: str, image: str) -> list[Problem]:
    name, tag, digest = image_parts(image)
    repository = name.split("/", 1)[1] if "." in name.split("/", 1)[0] else name
    if not _REPOSITORY.match(repository):
        return [Problem(where, f"{repository!r} is not a valid repository name (lowercase)")]
    if digest:
        if not _DIGEST.match(digest):
            return [Problem(where, f"{digest!r} is not a sha256 digest")]
        return []
    if not tag or tag == "latest":
        return [Problem(where, "pin a tag (the git commit) or a digest, never latest")]
    if not _TAG.match(tag):
        return [
            Problem(
                where, f"tag {tag!r} is not valid: 1-128 of A-Z a-z 0-9 _ . -, not starting . -"
            )
        ]
    return []


def _app_container(where: str, c: dict[str, Any]) -> list[Problem]:
    found = []
    user = str(c.get("user", ""))
    if not user or user.split(":")[0] in ("0", "root"):
        found.append(Problem(f"{where}.user", "app containers run as a non-root user"))
    if c.get("readonlyRootFilesystem") is not True:
        found.append(Problem(f"{where}.readonlyRootFilesystem", "must be true"))
    writable = {m.get("containerPath") for m in c.get("mountPoints", []) if not m.get("readOnly")}
    if "/tmp" not in writable:  # noqa: S108 - the container's /tmp mount, not a temp file
        found.append(
            Problem(
                f"{where}.mountPoints", "a writable /tmp volume is needed with a read-only root"
            )
        )
    if not c.get("linuxParameters", {}).get("initProcessEnabled"):
        found.append(
            Problem(
                f"{where}.linuxParameters.initProcessEnabled", "must be true (signals, zombies)"
            )
        )
    if "healthCheck" not in c:
        found.append(Problem(f"{where}.healthCheck", "app containers need a health check"))
    names = {d.get("containerName") for d in c.get("dependsOn", [])}
    env = {v["name"]: v["value"] for v in c.get("environment", [])}
    # The tracing sidecar: the X-Ray daemon, or the ADOT collector with TRACING_BACKEND=otel.
    tracer = "otel-collector" if env.get("TRACING_BACKEND") == "otel" else "xray-daemon"
    if not {"log-router", tracer} <= names:
        found.append(Problem(f"{where}.dependsOn", f"must depend on log-router and {tracer}"))
    try:
        budget = float(env.get("SHUTDOWN_DRAIN_SECONDS", 3)) + float(
            env.get("SHUTDOWN_GRACE_SECONDS", 20)
        )
    except ValueError:
        budget = 0
    if c.get("stopTimeout", 30) < budget + 5:
        found.append(
            Problem(f"{where}.stopTimeout", f"must exceed drain + grace ({budget:g} s) by 5 s")
        )
    return found + _database_access(where, c, env)


def _database_access(where: str, c: dict[str, Any], env: dict[str, str]) -> list[Problem]:
    """A PostgreSQL client: IAM tokens, verified TLS, no password (docs/database-access.md)."""
    if not env.get("DATABASE_URL", "").startswith("postgresql"):
        return []
    found = []
    if env.get("DATABASE_AUTH") != "iam":
        found.append(
            Problem(f"{where}.environment.DATABASE_AUTH", "must be iam: no long-lived password")
        )
    if not env.get("DATABASE_SSL_ROOT_CERT"):
        found.append(
            Problem(
                f"{where}.environment.DATABASE_SSL_ROOT_CERT",
                "the CA bundle is required: the database's certificate must be verified",
            )
        )
    for secret in c.get("secrets", []):
        if secret.get("name") == "DATABASE_PASSWORD":
            found.append(
                Problem(
                    f"{where}.secrets.DATABASE_PASSWORD",
                    "the service holds no database password (the migration reads the owner's)",
                )
            )
    return found


def service_definition(sd: dict[str, Any]) -> list[Problem]:
    params = {"cluster": "c", "serviceName": "s", "taskDefinition": "t", **sd}
    problems = _model_problems("CreateService", params)
    network = sd.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
    if network.get("assignPublicIp") != "DISABLED":
        problems.append(
            Problem("networkConfiguration.assignPublicIp", "tasks stay in private subnets")
        )
    breaker = sd.get("deploymentConfiguration", {}).get("deploymentCircuitBreaker", {})
    if not (breaker.get("enable") and breaker.get("rollback")):
        problems.append(
            Problem("deploymentConfiguration.deploymentCircuitBreaker", "enable it with rollback")
        )
    alarms = sd.get("deploymentConfiguration", {}).get("alarms", {})
    if not (alarms.get("alarmNames") and alarms.get("enable") and alarms.get("rollback")):
        # The circuit breaker catches tasks that do not start; a release that
        # starts and then answers errors or slowly is caught by the alarms only.
        problems.append(
            Problem(
                "deploymentConfiguration.alarms",
                "name the alarms of user-facing errors and latency, with enable and rollback",
            )
        )
    return problems


def scaling(config: dict[str, Any]) -> list[Problem]:
    """scaling.json: valid Application Auto Scaling input, and the rules AWS applies later."""
    where = {"ServiceNamespace": "ecs", "ResourceId": "service/c/s"}
    dimension = {**where, "ScalableDimension": "ecs:service:DesiredCount"}
    target = config.get("scalableTarget", {})
    problems = _model_problems(
        "RegisterScalableTarget",
        {**dimension, **target},
        "application-autoscaling",
        "scalableTarget",
    )
    low, high = target.get("MinCapacity", 0), target.get("MaxCapacity", 0)
    if not problems and not 0 <= low <= high:
        problems.append(Problem("scalableTarget", f"MinCapacity {low} > MaxCapacity {high}"))
    if not isinstance(config.get("scheduledActionsEnabled", False), bool):
        problems.append(
            Problem("scheduledActionsEnabled", "must be true or false (a JSON boolean)")
        )
    for action in config.get("scheduledActions", []):
        name = action.get("ScheduledActionName", "?")
        problems += _model_problems(
            "PutScheduledAction",
            {**dimension, **action},
            "application-autoscaling",
            f"scheduledActions[{name}]",
        )
    for policy in config.get("policies", []):
        name = policy.get("PolicyName", "?")
        found = _model_problems(
            "PutScalingPolicy",
            {**dimension, **policy},
            "application-autoscaling",
            f"policies[{name}]",
        )
        problems += found or _policy(name, policy)
    return problems


def _policy(name: str, policy: dict[str, Any]) -> list[Problem]:
    """Cooldowns; the request-count metric's rules are metric_math's."""
    spec = policy.get("TargetTrackingScalingPolicyConfiguration", {})
    if spec.get("ScaleOutCooldown", 0) > spec.get("ScaleInCooldown", 0):
        return [
            Problem(
                f"policies[{name}]",
                "scale out faster than in: ScaleOutCooldown <= ScaleInCooldown",
            )
        ]
    return []
