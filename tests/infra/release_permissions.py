"""Every AWS call the release makes, and what AWS authorizes for it, from AWS's
documentation (moto evaluates no IAM, so the suite cannot see a missing grant).

One row per call: the role that makes it (``push`` in the images job on main,
``deploy`` in a job of the GitHub environment), the call, each action AWS checks
for it with the resource and request context it checks them on, and the
documentation page that says so. ``{env}`` stands for the environment, the other
braces for the account; ``tests/infra/test_ci_identity.py`` requires the roles of
infra/ci.yml to allow every row and nothing beyond the rows.

To extend: add a ``Call`` to ``CALLS`` (a new image's repository reaches the rows
through ``IMAGES``), then the grant to infra/ci.yml.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sbcntrctl.infra.stacks import STACKS
from sbcntrctl.release.images import IMAGES

ACCOUNT, REGION = "123456789012", "ap-northeast-1"
ECS = f"arn:aws:ecs:{REGION}:{ACCOUNT}"
ECR = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository"
ROLE = f"arn:aws:iam::{ACCOUNT}:role"
CLUSTER = f"{ECS}:cluster/sbcntr-{{env}}"
SERVICES = ("frontend", "backend")
REPOSITORIES = tuple(image.repository for image in IMAGES.values())
# The X-Ray daemon, mirrored by the registry's pull-through cache (infra/registry.yml).
MIRRORED = ("ecr-public/xray/aws-xray-daemon",)
TASK_ROLES = tuple(
    f"{ROLE}/sbcntr-{{env}}-{s}-{k}" for s in SERVICES for k in ("execution", "task")
)
TO_ECS_TASKS = {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
AUTOSCALING_SLR = (
    f"{ROLE}/aws-service-role/ecs.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_ECSService"
)

# The documentation pages the rows cite.
SAR_ECS = "Service Authorization Reference: Actions, resources, and condition keys for Amazon ECS"
SAR_ECR = "Service Authorization Reference: Actions, resources, and condition keys for Amazon ECR"
ECR_PUSH = "Amazon ECR User Guide: Pushing a Docker image (Required IAM permissions for pushing)"
ECR_AUTH = "Amazon ECR User Guide: Private registry authentication"
ECR_BLOB = "Amazon ECR API Reference: BatchGetImage; GetDownloadUrlForLayer"
TAG_ON_CREATE = "Amazon ECS Developer Guide: Grant permission to tag resources on creation"
PASS_ROLE = "Amazon ECS Developer Guide: Amazon ECS task execution IAM role (iam:PassRole)"
RUN_TASK = "Amazon ECS API Reference: RunTask; Service Authorization Reference (ecs:cluster)"
SCALING = (
    "Amazon ECS Developer Guide: IAM permissions required for service auto scaling; "
    "Application Auto Scaling User Guide: Permissions validation"
)
SCALING_SLR = (
    "Application Auto Scaling User Guide: Service-linked roles for Application Auto Scaling"
)
CFN = "AWS CloudFormation API Reference: DescribeStacks"
LOOKUPS = "Service Authorization Reference: IAM, CloudWatch Logs, Secrets Manager (Get/Describe)"


@dataclass(frozen=True)
class Need:
    """One action AWS checks, on ``resource``, with the request's condition ``context``."""

    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)

    def at(self, env: str) -> Need:
        return Need(
            self.action,
            self.resource.format(env=env),
            {k: v.format(env=env) for k, v in self.context.items()},
        )


@dataclass(frozen=True)
class Call:
    role: str  # "push" or "deploy"
    call: str  # what the release calls, e.g. "ecs:CreateService backend (first deploy, tags)"
    needs: tuple[Need, ...]
    doc: str
    writes: bool = False

    def at(self, env: str) -> tuple[Need, ...]:
        return tuple(n.at(env) for n in self.needs)


def _push() -> list[Call]:
    rows = [
        Call(
            "push",
            "ecr:GetAuthorizationToken (ECR login)",
            (Need("ecr:GetAuthorizationToken", "*"),),
            ECR_AUTH,
        )
    ]
    for repo in REPOSITORIES:
        arn = f"{ECR}/{repo}"
        rows.append(
            Call(
                "push",
                f"ecr:DescribeImages {repo} (is the tag there?)",
                (Need("ecr:DescribeImages", arn),),
                SAR_ECR,
            )
        )
        layers = (
            "ecr:BatchCheckLayerAvailability",
            "ecr:InitiateLayerUpload",
            "ecr:UploadLayerPart",
            "ecr:CompleteLayerUpload",
            "ecr:PutImage",
            "ecr:BatchGetImage",
        )
        rows.append(
            Call(
                "push",
                f"docker push {repo}",
                tuple(Need(a, arn) for a in layers),
                ECR_PUSH,
                writes=True,
            )
        )
    return rows


def _deploy() -> list[Call]:
    rows = []
    for stack in STACKS:
        name = stack.name("{env}")
        arn = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/0f1e2d3c"
        if stack.key != "ci":
            rows.append(
                Call(
                    "deploy",
                    f"cloudformation:DescribeStacks {name}",
                    (Need("cloudformation:DescribeStacks", arn),),
                    CFN,
                )
            )
    rows.append(
        Call("deploy", "ecs:DescribeClusters", (Need("ecs:DescribeClusters", CLUSTER),), SAR_ECS)
    )
    for repo in REPOSITORIES + MIRRORED:
        arn = f"{ECR}/{repo}"
        rows.append(
            Call(
                "deploy", f"ecr:DescribeImages {repo}", (Need("ecr:DescribeImages", arn),), SAR_ECR
            )
        )
        rows.append(
            Call(
                "deploy",
                f"ecr:BatchGetImage {repo} (platforms)",
                (Need("ecr:BatchGetImage", arn),),
                ECR_BLOB,
            )
        )
        rows.append(
            Call(
                "deploy",
                f"ecr:GetDownloadUrlForLayer {repo} (image config)",
                (Need("ecr:GetDownloadUrlForLayer", arn),),
                ECR_BLOB,
            )
        )
    rows.append(
        Call(
            "deploy",
            "ecr:DescribePullThroughCacheRules",
            (Need("ecr:DescribePullThroughCacheRules", "*"),),
            SAR_ECR,
        )
    )
    rows.append(
        Call("deploy", "logs:DescribeLogGroups", (Need("logs:DescribeLogGroups", "*"),), LOOKUPS)
    )
    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:sbcntr/{{env}}/database-AbCdEf"
    rows.append(
        Call(
            "deploy",
            "secretsmanager:DescribeSecret",
            (Need("secretsmanager:DescribeSecret", secret),),
            LOOKUPS,
        )
    )
    rows += [
        Call("deploy", f"iam:GetRole {r.rsplit('/', 1)[1]}", (Need("iam:GetRole", r),), LOOKUPS)
        for r in TASK_ROLES
    ]
    env_tag = {"aws:RequestTag/Environment": "{env}"}
    for service in SERVICES:
        family = f"{ECS}:task-definition/sbcntr-{service}:7"
        roles = [r for r in TASK_ROLES if f"-{service}-" in r]
        passes = tuple(Need("iam:PassRole", r, TO_ECS_TASKS) for r in roles)
        service_arn = f"{ECS}:service/sbcntr-{{env}}/sbcntr-{service}"
        rows += [
            Call(
                "deploy",
                f"ecs:RegisterTaskDefinition sbcntr-{service} (tags, roles)",
                (
                    Need("ecs:RegisterTaskDefinition", "*", env_tag),
                    Need(
                        "ecs:TagResource",
                        family,
                        {"ecs:CreateAction": "RegisterTaskDefinition", **env_tag},
                    ),
                    *passes,
                ),
                f"{TAG_ON_CREATE}; {PASS_ROLE}",
                writes=True,
            ),
            Call(
                "deploy",
                f"ecs:DescribeServices sbcntr-{service}",
                (Need("ecs:DescribeServices", service_arn),),
                SAR_ECS,
            ),
            Call(
                "deploy",
                f"ecs:CreateService sbcntr-{service} (first deploy, tags)",
                (
                    Need("ecs:CreateService", service_arn),
                    Need(
                        "ecs:TagResource",
                        service_arn,
                        {"ecs:CreateAction": "CreateService", **env_tag},
                    ),
                ),
                TAG_ON_CREATE,
                writes=True,
            ),
            Call(
                "deploy",
                f"ecs:UpdateService sbcntr-{service}",
                (Need("ecs:UpdateService", service_arn),),
                SAR_ECS,
                writes=True,
            ),
            Call(
                "deploy",
                f"ecs:TagResource sbcntr-{service} revision (steady state)",
                (Need("ecs:TagResource", family, {"aws:ResourceTag/Environment": "{env}"}),),
                SAR_ECS,
                writes=True,
            ),
            Call(
                "deploy",
                f"ecs:ListTagsForResource sbcntr-{service} revision",
                (Need("ecs:ListTagsForResource", family),),
                SAR_ECS,
            ),
            Call(
                "deploy",
                f"application-autoscaling:RegisterScalableTarget sbcntr-{service} (the first one)",
                (
                    Need("application-autoscaling:RegisterScalableTarget", "*"),
                    Need("ecs:DescribeServices", service_arn),
                    Need("ecs:UpdateService", service_arn),
                    Need(
                        "iam:CreateServiceLinkedRole",
                        AUTOSCALING_SLR,
                        {"iam:AWSServiceName": "ecs.application-autoscaling.amazonaws.com"},
                    ),
                ),
                f"{SCALING}; {SCALING_SLR}",
                writes=True,
            ),
        ]
        alarm = (
            f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:"
            f"TargetTracking-service/sbcntr-{{env}}/sbcntr-{service}-AlarmHigh-0a1b"
        )
        rows += [
            Call(
                "deploy",
                f"application-autoscaling:PutScalingPolicy sbcntr-{service} (target tracking)",
                (
                    Need("application-autoscaling:PutScalingPolicy", "*"),
                    Need("cloudwatch:PutMetricAlarm", alarm),
                    Need("cloudwatch:DescribeAlarms", alarm),
                    Need("cloudwatch:DeleteAlarms", alarm),
                ),
                SCALING,
                writes=True,
            ),
            Call(
                "deploy",
                f"application-autoscaling:DeleteScalingPolicy sbcntr-{service} (target tracking)",
                (
                    Need("application-autoscaling:DeleteScalingPolicy", "*"),
                    Need("cloudwatch:DescribeAlarms", alarm),
                    Need("cloudwatch:DeleteAlarms", alarm),
                ),
                SCALING,
                writes=True,
            ),
        ]
    backend = f"{ECS}:task-definition/sbcntr-backend:7"
    rows.append(
        Call(
            "deploy",
            "ecs:RunTask sbcntr-backend (the migration)",
            (
                Need("ecs:RunTask", backend, {"ecs:cluster": CLUSTER}),
                *(Need("iam:PassRole", r, TO_ECS_TASKS) for r in TASK_ROLES if "-backend-" in r),
            ),
            f"{RUN_TASK}; {PASS_ROLE}",
            writes=True,
        )
    )
    rows += [
        Call(
            "deploy",
            "ecs:DescribeTasks",
            (Need("ecs:DescribeTasks", f"{ECS}:task/sbcntr-{{env}}/0123abcd"),),
            SAR_ECS,
        ),
        Call(
            "deploy",
            "ecs:ListTasks",
            (Need("ecs:ListTasks", f"{ECS}:container-instance/sbcntr-{{env}}/*"),),
            SAR_ECS,
        ),
        Call(
            "deploy",
            "ecs:DescribeTaskDefinition",
            (Need("ecs:DescribeTaskDefinition", "*"),),
            SAR_ECS,
        ),
        Call(
            "deploy",
            "ecs:ListTaskDefinitions (rollback)",
            (Need("ecs:ListTaskDefinitions", "*"),),
            SAR_ECS,
        ),
    ]
    for action in (
        "DescribeScalableTargets",
        "DescribeScalingPolicies",
        "DescribeScheduledActions",
    ):
        rows.append(
            Call(
                "deploy",
                f"application-autoscaling:{action}",
                (Need(f"application-autoscaling:{action}", "*"),),
                SCALING,
            )
        )
    for action in ("PutScheduledAction", "DeleteScheduledAction"):
        rows.append(
            Call(
                "deploy",
                f"application-autoscaling:{action}",
                (Need(f"application-autoscaling:{action}", "*"),),
                SCALING,
                writes=True,
            )
        )
    return rows


CALLS: tuple[Call, ...] = (*_push(), *_deploy())

# Writes AWS authorizes on no resource ARN and validates against nothing of the
# environment (Application Auto Scaling scheduled actions: the scalable target has no
# name-based ARN): a deploy role of one environment could change another's.
NOT_SCOPABLE_BY_ENVIRONMENT = frozenset(
    {"application-autoscaling:PutScheduledAction", "application-autoscaling:DeleteScheduledAction"}
)


def uncovered(actions: list[str], role: str = "deploy") -> list[str]:
    """The calls among ``actions`` (IAM action names) that no row of ``role`` makes."""
    made = {c.needs[0].action for c in CALLS if c.role == role}
    return sorted(set(actions) - made)
