"""Every AWS call the release makes, and what AWS authorizes for it, from AWS's
documentation (moto evaluates no IAM, so the suite cannot see a missing grant).

One row per call: the role that makes it (``push`` in the images job on main,
``deploy`` in a job of the GitHub environment), the call, each action AWS checks
for it with the resource and request context it checks them on, and the
documentation page that says so. ``{env}`` stands for the environment, the other
braces for the account; ``tests/infra/test_ci_identity.py`` requires the roles of
infra/ci.yml to allow every row and nothing beyond the rows.

To extend: add a row to ``_push``, ``_verify``, ``_service`` or ``_deploy``
(``one(...)`` for a call AWS authorizes as the action of its name, ``Call(...)``
with every ``Need`` otherwise), then the grant to infra/ci.yml. A new image's
repository reaches the push rows through ``IMAGES``, and the deploy's verify
rows too when the image is ``deployed``.
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
CLOUDWATCH = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}"
SERVICES = ("frontend", "backend")
REPOSITORIES = tuple(image.repository for image in IMAGES.values())
# What the deploy roles verify: the images the services' task definitions run (the
# load generator is pushed, never deployed by the release).
DEPLOYED_REPOSITORIES = tuple(image.repository for image in IMAGES.values() if image.deployed)
# The X-Ray daemon, mirrored by the registry's pull-through cache (infra/registry.yml).
MIRRORED = ("ecr-public/xray/aws-xray-daemon",)
TASK_ROLES = tuple(
    f"{ROLE}/sbcntr-{{env}}-{s}-{k}" for s in SERVICES for k in ("execution", "task")
)
TO_ECS_TASKS = {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
TO_ECS = {"iam:PassedToService": "ecs.amazonaws.com"}
# The roles a BLUE_GREEN or CANARY service definition names (DEPLOYMENT_STRATEGY):
# ECS's infrastructure role for load balancers (infra/edge.yml) and the role ECS
# invokes the test-traffic hook with (infra/deploy-hook.yml).
BLUE_GREEN_ROLES = (
    f"{ROLE}/sbcntr-{{env}}-ecs-load-balancers",
    f"{ROLE}/sbcntr-{{env}}-deploy-hook-invoke",
)
# deploymentConfiguration.alarms of each service (taskdefs/*/service-def.json): the
# deploy reads their state first (sbcntrctl deploy verify).
ROLLBACK_ALARMS = {
    "frontend": ("public-5xx-rate", "frontend-p99-latency"),
    "backend": ("public-5xx-rate",),
}
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
SAR_ELB = (
    "Service Authorization Reference: Actions, resources, and condition keys for Elastic Load "
    "Balancing V2 (DescribeRules: no resource-level permissions); Elastic Load Balancing API "
    "Reference: DescribeRules"
)
LOOKUPS = "Service Authorization Reference: IAM, CloudWatch Logs, Secrets Manager (Get/Describe)"
SAR_ELB_SHIFT = (
    "Service Authorization Reference: Actions, resources, and condition keys for Elastic Load "
    "Balancing V2 (DescribeTargetGroups, DescribeListeners: no resource-level permissions); "
    "Elastic Load Balancing API Reference: DescribeTargetGroups, DescribeListeners"
)
SAR_LAMBDA = (
    "Service Authorization Reference: Actions, resources, and condition keys for AWS Lambda "
    "(GetFunctionConfiguration: function); AWS Lambda API Reference: GetFunctionConfiguration"
)
SAR_IAM = (
    "Service Authorization Reference: Actions, resources, and condition keys for AWS Identity "
    "and Access Management (GetRole: role); IAM API Reference: GetRole"
)
# The test-traffic hook function of infra/deploy-hook.yml (DEPLOY_HOOK_FUNCTION_ARN).
HOOK_FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sbcntr-{{env}}-deploy-hook"
SAR_EC2 = (
    "Service Authorization Reference: Actions, resources, and condition keys for Amazon EC2 "
    "(DescribeSubnets: no resource-level permissions)"
)
HISTORY = (
    "Amazon ECS API Reference: ListServiceDeployments, DescribeServiceDeployments, "
    "DescribeServiceRevisions; Service Authorization Reference (service-deployment, "
    "service-revision resources)"
)
ALARMS = "Amazon CloudWatch API Reference: DescribeAlarms; Service Authorization Reference (alarm)"
PASS_BLUE_GREEN_ROLES = (
    "Amazon ECS Developer Guide: Amazon ECS infrastructure IAM role for load balancers; "
    "Lifecycle hooks for Amazon ECS service deployments (iam:PassRole, to ecs.amazonaws.com)"
)
STOP_DEPLOYMENT = (
    "Amazon ECS Developer Guide: Stopping Amazon ECS service deployments; Amazon ECS API "
    "Reference: StopServiceDeployment; Service Authorization Reference (service-deployment)"
)


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


def one(
    role: str, action: str, resource: str, doc: str, what: str = "", *, writes: bool = False
) -> Call:
    """A call AWS authorizes as the one action of its name."""
    return Call(role, f"{action} {what}".strip(), (Need(action, resource),), doc, writes)


def _push() -> list[Call]:
    rows = [one("push", "ecr:GetAuthorizationToken", "*", ECR_AUTH, "(ECR login)")]
    layers = (
        "ecr:BatchCheckLayerAvailability",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:PutImage",
        "ecr:BatchGetImage",
    )
    for repo in REPOSITORIES:
        arn = f"{ECR}/{repo}"
        rows += [
            one("push", "ecr:DescribeImages", arn, SAR_ECR, f"{repo} (is the tag there?)"),
            Call(
                "push", f"docker push {repo}", tuple(Need(a, arn) for a in layers), ECR_PUSH, True
            ),
        ]
    return rows


def _verify() -> list[Call]:
    """``sbcntrctl deploy verify``, before anything is registered."""
    rows = [
        one("deploy", "cloudformation:DescribeStacks", stack_arn, CFN, name)
        for stack in STACKS
        if stack.key != "ci"
        for name in [stack.name("{env}")]
        for stack_arn in [f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/0f1e2d3c"]
    ]
    rows.append(one("deploy", "ecs:DescribeClusters", CLUSTER, SAR_ECS))
    for repo in DEPLOYED_REPOSITORIES + MIRRORED:
        arn = f"{ECR}/{repo}"
        rows += [
            one("deploy", "ecr:DescribeImages", arn, SAR_ECR, repo),
            one("deploy", "ecr:BatchGetImage", arn, ECR_BLOB, f"{repo} (platforms)"),
            one("deploy", "ecr:GetDownloadUrlForLayer", arn, ECR_BLOB, f"{repo} (image config)"),
        ]
    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:sbcntr/{{env}}/database-AbCdEf"
    rows += [
        one("deploy", "ecr:DescribePullThroughCacheRules", "*", SAR_ECR),
        one("deploy", "logs:DescribeLogGroups", "*", LOOKUPS),
        one("deploy", "ec2:DescribeSubnets", "*", SAR_EC2, "the service's subnets' AZs"),
        one(
            "deploy",
            "elasticloadbalancing:DescribeRules",
            "*",
            SAR_ELB,
            "the production rule's weights (going back to ROLLING)",
        ),
        one("deploy", "secretsmanager:DescribeSecret", secret, LOOKUPS),
        *(one("deploy", "iam:GetRole", r, LOOKUPS, r.rsplit("/", 1)[1]) for r in TASK_ROLES),
    ]
    return rows + _verify_blue_green()


def _verify_blue_green() -> list[Call]:
    """What a BLUE_GREEN or CANARY definition names (sbcntrctl.deploy.traffic_shift)."""
    return [
        one(
            "deploy",
            "elasticloadbalancing:DescribeTargetGroups",
            "*",
            SAR_ELB_SHIFT,
            "the primary and alternate target groups",
        ),
        one(
            "deploy",
            "elasticloadbalancing:DescribeListeners",
            "*",
            SAR_ELB_SHIFT,
            "the production and test rules' listeners",
        ),
        one(
            "deploy",
            "lambda:GetFunctionConfiguration",
            HOOK_FUNCTION,
            SAR_LAMBDA,
            "the test-traffic hook",
        ),
        *(
            one("deploy", "iam:GetRole", r, SAR_IAM, f"{r.rsplit('/', 1)[1]} (trusts ECS)")
            for r in BLUE_GREEN_ROLES
        ),
    ]


def _service(service: str) -> list[Call]:
    """Registering, creating or updating one service, and its scaling."""
    env_tag = {"aws:RequestTag/Environment": "{env}"}
    family = f"{ECS}:task-definition/sbcntr-{service}:7"
    arn = f"{ECS}:service/sbcntr-{{env}}/sbcntr-{service}"
    name = f"sbcntr-{service}"
    passes = tuple(Need("iam:PassRole", r, TO_ECS_TASKS) for r in TASK_ROLES if f"-{service}-" in r)
    alarm = f"{CLOUDWATCH}:alarm:TargetTracking-service/sbcntr-{{env}}/{name}-AlarmHigh-0a1b"
    register_tag = {"ecs:CreateAction": "RegisterTaskDefinition", **env_tag}
    create_tag = {"ecs:CreateAction": "CreateService", **env_tag}
    slr = {"iam:AWSServiceName": "ecs.application-autoscaling.amazonaws.com"}
    steady = {"aws:ResourceTag/Environment": "{env}"}
    return [
        Call(
            "deploy",
            f"ecs:RegisterTaskDefinition {name} (tags, roles)",
            (
                Need("ecs:RegisterTaskDefinition", "*", env_tag),
                Need("ecs:TagResource", family, register_tag),
                *passes,
            ),
            f"{TAG_ON_CREATE}; {PASS_ROLE}",
            writes=True,
        ),
        one("deploy", "ecs:DescribeServices", arn, SAR_ECS, name),
        Call(
            "deploy",
            f"ecs:CreateService {name} (first deploy, tags)",
            (Need("ecs:CreateService", arn), Need("ecs:TagResource", arn, create_tag)),
            TAG_ON_CREATE,
            writes=True,
        ),
        one("deploy", "ecs:UpdateService", arn, SAR_ECS, name, writes=True),
        Call(
            "deploy",
            f"ecs:CreateService {name} (first deploy, BLUE_GREEN or CANARY)",
            (
                Need("ecs:CreateService", arn),
                Need("ecs:TagResource", arn, create_tag),
                *(Need("iam:PassRole", r, TO_ECS) for r in BLUE_GREEN_ROLES),
            ),
            f"{TAG_ON_CREATE}; {PASS_BLUE_GREEN_ROLES}",
            writes=True,
        ),
        Call(
            "deploy",
            f"ecs:UpdateService {name} (BLUE_GREEN or CANARY)",
            (
                Need("ecs:UpdateService", arn),
                *(Need("iam:PassRole", r, TO_ECS) for r in BLUE_GREEN_ROLES),
            ),
            PASS_BLUE_GREEN_ROLES,
            writes=True,
        ),
        one(
            "deploy",
            "ecs:StopServiceDeployment",
            f"{ECS}:service-deployment/sbcntr-{{env}}/{name}/0a1b2c3d",
            STOP_DEPLOYMENT,
            f"{name} (rollback during a deployment)",
            writes=True,
        ),
        Call(
            "deploy",
            f"ecs:TagResource {name} revision (steady state)",
            (Need("ecs:TagResource", family, steady),),
            SAR_ECS,
            writes=True,
        ),
        one("deploy", "ecs:ListTagsForResource", family, SAR_ECS, f"{name} revision"),
        Call(
            "deploy",
            f"cloudwatch:DescribeAlarms {name} (its rollback alarms)",
            tuple(
                Need("cloudwatch:DescribeAlarms", f"{CLOUDWATCH}:alarm:sbcntr-{{env}}-{alarm}")
                for alarm in ROLLBACK_ALARMS[service]
            ),
            ALARMS,
        ),
        one("deploy", "ecs:ListServiceDeployments", arn, HISTORY, name),
        one(
            "deploy",
            "ecs:DescribeServiceDeployments",
            f"{ECS}:service-deployment/sbcntr-{{env}}/{name}/0a1b2c3d",
            HISTORY,
            name,
        ),
        one(
            "deploy",
            "ecs:DescribeServiceRevisions",
            f"{ECS}:service-revision/sbcntr-{{env}}/{name}/4567890123",
            HISTORY,
            name,
        ),
        Call(
            "deploy",
            f"application-autoscaling:RegisterScalableTarget {name} (the first one)",
            (
                Need("application-autoscaling:RegisterScalableTarget", "*"),
                Need("ecs:DescribeServices", arn),
                Need("ecs:UpdateService", arn),
                Need("iam:CreateServiceLinkedRole", AUTOSCALING_SLR, slr),
            ),
            f"{SCALING}; {SCALING_SLR}",
            writes=True,
        ),
        Call(
            "deploy",
            f"application-autoscaling:PutScalingPolicy {name} (target tracking)",
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
            f"application-autoscaling:DeleteScalingPolicy {name} (target tracking)",
            (
                Need("application-autoscaling:DeleteScalingPolicy", "*"),
                Need("cloudwatch:DescribeAlarms", alarm),
                Need("cloudwatch:DeleteAlarms", alarm),
            ),
            SCALING,
            writes=True,
        ),
    ]


def _deploy() -> list[Call]:
    backend = f"{ECS}:task-definition/sbcntr-backend:7"
    migration = Call(
        "deploy",
        "ecs:RunTask sbcntr-backend (the migration)",
        (
            Need("ecs:RunTask", backend, {"ecs:cluster": CLUSTER}),
            *(Need("iam:PassRole", r, TO_ECS_TASKS) for r in TASK_ROLES if "-backend-" in r),
            # overrides.taskRoleArn: the migration's own role (sbcntrctl.deploy.migrate)
            Need("iam:PassRole", f"{ROLE}/sbcntr-{{env}}-backend-migrate", TO_ECS_TASKS),
        ),
        f"{RUN_TASK}; {PASS_ROLE}",
        writes=True,
    )
    scaling = "application-autoscaling:"
    return [
        *_verify(),
        *(row for service in SERVICES for row in _service(service)),
        migration,
        one("deploy", "ecs:DescribeTasks", f"{ECS}:task/sbcntr-{{env}}/0123abcd", SAR_ECS),
        one("deploy", "ecs:ListTasks", f"{ECS}:container-instance/sbcntr-{{env}}/*", SAR_ECS),
        one("deploy", "ecs:DescribeTaskDefinition", "*", SAR_ECS),
        one("deploy", "ecs:ListTaskDefinitions", "*", SAR_ECS, "(rollback)"),
        one("deploy", f"{scaling}DescribeScalableTargets", "*", SCALING),
        one("deploy", f"{scaling}DescribeScalingPolicies", "*", SCALING),
        one("deploy", f"{scaling}DescribeScheduledActions", "*", SCALING),
        one("deploy", f"{scaling}PutScheduledAction", "*", SCALING, writes=True),
        one("deploy", f"{scaling}DeleteScheduledAction", "*", SCALING, writes=True),
    ]


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
