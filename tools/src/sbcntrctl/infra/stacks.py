"""The stacks, their order, and which output feeds which task definition variable.

One template per lifetime (``infra/*.yml``): the registry (and the release
pipeline's identity) are shared by every environment of an account; the others
exist once per environment, created in this order (each imports exports of the
ones before) and deleted in reverse. Optional stacks need parameters of their
own (the repository, the notifier's code) and are deployed only when named.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INFRA_DIR = Path(__file__).resolve().parents[4] / "infra"
# An environment is any name of this form (the templates' EnvName AllowedPattern):
# it goes into stack, cluster, bucket, log group and role names.
ENV_NAME_PATTERN = "^[a-z][a-z0-9]{1,7}$"
ENV_NAME_RULE = "2-8 lowercase letters or digits, starting with a letter (dev, stg, prod, qa...)"
# Per-environment values of the usual environments, given to a stack that is created
# (or lacks the parameter) unless --param gives another; any other name takes the
# templates' defaults. One /16 per environment, so environments can be peered later.
ENVIRONMENT_PARAMETERS: dict[str, dict[str, str]] = {
    "dev": {"VpcCidrPrefix": "10.10"},
    "stg": {"VpcCidrPrefix": "10.20"},
    "prod": {"VpcCidrPrefix": "10.30"},
}


def env_name(value: str) -> str:
    """argparse ``type`` of an environment name: ``value``, or the rule it breaks."""
    if not re.fullmatch(ENV_NAME_PATTERN.strip("^$"), value):
        msg = f"{value!r}: an environment name is {ENV_NAME_RULE}"
        raise argparse.ArgumentTypeError(msg)
    return value


@dataclass(frozen=True)
class Stack:
    """One template; ``shared`` stacks exist once per account and region."""

    key: str
    shared: bool = False
    optional: bool = False  # deployed only when named (--only): it needs parameters of its own

    def name(self, env: str) -> str:
        return f"sbcntr-{self.key}" if self.shared else f"sbcntr-{env}-{self.key}"

    def path(self, directory: Path = INFRA_DIR) -> Path:
        return directory / f"{self.key}.yml"

    def template(self, directory: Path = INFRA_DIR) -> dict[str, Any]:
        """The parsed template (short-form tags become ``Ref``/``Fn::*`` mappings)."""
        # cfn-lint's loader takes most of a second to import: only when a template is read.
        from cfnlint.decode import cfn_yaml  # noqa: PLC0415

        parsed: dict[str, Any] = cfn_yaml.load(str(self.path(directory)))
        return parsed

    def parameters(self, directory: Path = INFRA_DIR) -> set[str]:
        return set(self.template(directory).get("Parameters", {}))


STACKS = (
    Stack("ci", shared=True, optional=True),  # the release pipeline's identity (docs/release.md)
    Stack("registry", shared=True),
    Stack("network"),
    Stack("platform"),
    Stack("edge"),
    Stack("data"),
    Stack("monitoring", optional=True),  # alarms and the error mail (docs/observability.md)
    Stack("operations", optional=True),  # the bastion and its session log (docs/operations.md)
    Stack("drills", optional=True),  # FIS experiment templates (docs/operations.md)
    Stack("deploy-hook", optional=True),  # blue/green and canary test-traffic checks
)
BY_KEY = {stack.key: stack for stack in STACKS}

# Task definition variable -> (stack, output). Every `must_env` of taskdefs/ is
# here, in DERIVED, or in USER_SUPPLIED (tests/infra checks that none is missing).
FROM_OUTPUTS: dict[str, tuple[str, str]] = {
    "PRIVATE_SUBNET_1": ("network", "PrivateSubnet1"),
    "PRIVATE_SUBNET_2": ("network", "PrivateSubnet2"),
    "PRIVATE_SUBNET_3": ("network", "PrivateSubnet3"),  # with AzCount=3 only
    "ECS_CLUSTER": ("platform", "EcsCluster"),
    "LOG_BUCKET": ("platform", "LogBucket"),
    "DB_SECRET_ARN": ("platform", "DbSecretArn"),
    "SECRETS_KMS_KEY_ARN": ("platform", "SecretsKmsKeyArn"),
    "FRONTEND_SECURITY_GROUP": ("edge", "FrontendSecurityGroup"),
    "BACKEND_SECURITY_GROUP": ("edge", "BackendSecurityGroup"),
    "FRONTEND_TARGET_GROUP_ARN": ("edge", "FrontendTargetGroupArn"),
    "BACKEND_TARGET_GROUP_ARN": ("edge", "BackendTargetGroupArn"),
    # Request-count scaling (scaling.json): the metrics of both target groups.
    "FRONTEND_ALB_FULL_NAME": ("edge", "PublicAlbFullName"),
    "BACKEND_ALB_FULL_NAME": ("edge", "InternalAlbFullName"),
    "FRONTEND_TARGET_GROUP_FULL_NAME": ("edge", "FrontendTargetGroupFullName"),
    "BACKEND_TARGET_GROUP_FULL_NAME": ("edge", "BackendTargetGroupFullName"),
    # Blue/green and canary deployments only (DEPLOYMENT_STRATEGY, docs/release.md).
    "FRONTEND_ALTERNATE_TARGET_GROUP_ARN": ("edge", "FrontendAlternateTargetGroupArn"),
    "BACKEND_ALTERNATE_TARGET_GROUP_ARN": ("edge", "BackendAlternateTargetGroupArn"),
    "FRONTEND_ALTERNATE_TARGET_GROUP_FULL_NAME": ("edge", "FrontendAlternateTargetGroupFullName"),
    "BACKEND_ALTERNATE_TARGET_GROUP_FULL_NAME": ("edge", "BackendAlternateTargetGroupFullName"),
    "FRONTEND_PRODUCTION_RULE_ARN": ("edge", "FrontendProductionRuleArn"),
    "BACKEND_PRODUCTION_RULE_ARN": ("edge", "BackendProductionRuleArn"),
    "FRONTEND_TEST_RULE_ARN": ("edge", "FrontendTestRuleArn"),
    "BACKEND_TEST_RULE_ARN": ("edge", "BackendTestRuleArn"),
    "ECS_LB_INFRASTRUCTURE_ROLE_ARN": ("edge", "LoadBalancerInfrastructureRoleArn"),
    "DEPLOY_HOOK_FUNCTION_ARN": ("deploy-hook", "DeployHookFunctionArn"),
    "DEPLOY_HOOK_ROLE_ARN": ("deploy-hook", "DeployHookRoleArn"),
    "BACKEND_URL": ("edge", "BackendUrl"),
    "DATABASE_URL": ("data", "DatabaseUrl"),
    "DB_RESOURCE_ID": ("data", "DatabaseResourceId"),
}
# Read by `deploy verify`, not by the templates: the service's subnets must cover
# the AzCount Availability Zones of the network.
FOR_CHECKS: dict[str, tuple[str, str]] = {"AZ_COUNT": ("network", "AzCount")}
# Needed only by a blue/green or canary deployment: its render names each one missing.
BLUE_GREEN = frozenset(
    {
        "FRONTEND_ALTERNATE_TARGET_GROUP_ARN",
        "BACKEND_ALTERNATE_TARGET_GROUP_ARN",
        "FRONTEND_ALTERNATE_TARGET_GROUP_FULL_NAME",
        "BACKEND_ALTERNATE_TARGET_GROUP_FULL_NAME",
        "FRONTEND_PRODUCTION_RULE_ARN",
        "BACKEND_PRODUCTION_RULE_ARN",
        "FRONTEND_TEST_RULE_ARN",
        "BACKEND_TEST_RULE_ARN",
        "ECS_LB_INFRASTRUCTURE_ROLE_ARN",
        "DEPLOY_HOOK_FUNCTION_ARN",
        "DEPLOY_HOOK_ROLE_ARN",
    }
)
# Outputs a stack has only with some parameters (or since some version), or of an
# optional stack: absent, unset.
OPTIONAL = frozenset({"PRIVATE_SUBNET_3", "AZ_COUNT", *BLUE_GREEN})
# How each usual environment deploys its services (docs/release.md, "Deployment
# strategies"); any other environment rolls. The process environment wins.
DEPLOYMENT_SETTINGS: dict[str, dict[str, str]] = {
    "stg": {"DEPLOYMENT_STRATEGY": "BLUE_GREEN", "BAKE_TIME_MINUTES": "5"},
    "prod": {"DEPLOYMENT_STRATEGY": "BLUE_GREEN", "BAKE_TIME_MINUTES": "10"},
}
# Known without an output: the account (from the stack ids), region, environment.
DERIVED = ("AWS_ACCOUNT_ID", "AWS_REGION", "ENV_NAME")
# Chosen per deploy by the user.
USER_SUPPLIED = {
    "IMAGE_TAG": "the tag of the images pushed for this release (the git commit)",
    "LOADTEST_BUCKET": "the S3 bucket a distributed load run's master uploads its reports to",
}
