"""Checks against the account before anything is registered: what ECS would
refuse later, or accept and then fail to run (moto enforces none of these).

- The cluster exists and is ACTIVE.
- The capacity provider the service uses is attached to the cluster: a
  service whose ``capacityProviderStrategy`` names a provider the cluster
  lacks is refused by CreateService/UpdateService ("The specified capacity
  provider strategy cannot contain a capacity provider that is not associated
  with the cluster", Amazon ECS API reference, CapacityProviderStrategyItem).
- Every image in this account's ECR exists with its tag, as ``ecspresso
  verify`` checks; an image under a pull-through cache prefix needs the cache
  rule (the repository appears on the first pull). A missing image is only
  found by ECS when tasks fail to start (CannotPullContainerError).
- Every such image is built for the task's ``runtimePlatform`` (its index
  lists that platform, or its config names it: ``platforms``). ECS registers
  an ARM64 task definition pinned to an amd64-only image, and the tasks never
  start.
- The roles, the ``awslogs`` log groups and the secrets the task definition
  names exist: RegisterTaskDefinition accepts them missing, and the tasks
  then fail to start (ResourceInitializationError).
- The CloudWatch alarms the service's deployments roll back on exist: ECS
  watches alarms by name, and one that does not exist never goes to ALARM, so
  a release that hurts users would not be rolled back.
- The service's subnets cover every Availability Zone the network made
  (``AZ_COUNT``, its AzCount): ECS places tasks only in the subnets it is
  given, so a third AZ paid for (NAT, endpoints) would run nothing.
"""

from __future__ import annotations

import re
from typing import Any

from sbcntrctl.deploy import platforms
from sbcntrctl.deploy.aws import AwsError, Client, error_code
from sbcntrctl.deploy.verify import Problem

# <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>
ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>.+))?$"
)


def cluster(name: str, strategy: list[dict[str, Any]]) -> list[Problem]:
    """The cluster exists and has every capacity provider ``strategy`` names."""
    found = Client("ecs").describe_clusters(clusters=[name])
    active = [c for c in found.get("clusters", []) if c.get("status") == "ACTIVE"]
    if not active:
        return [Problem("cluster", f"{name} does not exist (or is not ACTIVE): create it first")]
    attached = set(active[0].get("capacityProviders", []))
    return [
        Problem(
            "capacityProviderStrategy",
            f"{item['capacityProvider']} is not attached to cluster {name}: "
            f"aws ecs put-cluster-capacity-providers --cluster {name} "
            "--capacity-providers FARGATE FARGATE_SPOT --default-capacity-provider-strategy "
            "capacityProvider=FARGATE,weight=1",
        )
        for item in strategy
        if item.get("capacityProvider") not in attached
    ]


def images(td: dict[str, Any], fetch: platforms.Download = platforms.download) -> list[Problem]:
    """Every image of ``td`` hosted in ECR exists (or comes through a cache rule) and
    runs on the task's platform (``fetch`` downloads an image config from ECR)."""
    problems = []
    ecr = Client("ecr")
    wanted = platforms.task_platform(td)
    for container in td.get("containerDefinitions", []):
        match = ECR_IMAGE.match(container.get("image", ""))
        if not match:
            continue
        repository, tag, digest = match["repository"], match["tag"], match["digest"]
        image_id = {"imageDigest": digest} if digest else {"imageTag": tag or "latest"}
        where = f"containerDefinitions[{container.get('name')}].image"
        try:
            ecr.describe_images(
                registryId=match["account"], repositoryName=repository, imageIds=[image_id]
            )
        except AwsError as exc:
            code = error_code(exc)
            if code == "RepositoryNotFoundException" and "/" in repository:
                problems += _pull_through(ecr, match["account"], repository, where)
            elif code in ("RepositoryNotFoundException", "ImageNotFoundException"):
                problems.append(
                    Problem(where, f"{repository}:{tag or digest} is not in ECR: push it first")
                )
            else:
                raise
            continue
        ref = f"{repository}@{digest}" if digest else f"{repository}:{tag or 'latest'}"
        found = platforms.image_platforms(ecr, match["account"], repository, image_id, fetch)
        if not platforms.runs_on(found, wanted):
            problems.append(
                Problem(
                    where,
                    f"{ref} is built for "
                    f"{', '.join(found) or 'no platform'}, not for {wanted} "
                    "(runtimePlatform): build and push it for that platform",
                )
            )
    return problems


def _pull_through(ecr: Client, account: str, repository: str, where: str) -> list[Problem]:
    prefix = repository.split("/", 1)[0]
    try:
        rules = ecr.describe_pull_through_cache_rules(
            registryId=account, ecrRepositoryPrefixes=[prefix]
        )["pullThroughCacheRules"]
    except AwsError as exc:
        if error_code(exc) != "PullThroughCacheRuleNotFoundException":
            raise
        rules = []
    if rules:
        return []
    return [
        Problem(
            where,
            f"no repository {repository} and no pull-through cache rule for prefix {prefix}: "
            f"create the rule (aws ecr create-pull-through-cache-rule --ecr-repository-prefix "
            f"{prefix} --upstream-registry-url public.ecr.aws)",
        )
    ]


def references(td: dict[str, Any]) -> list[Problem]:
    """The roles, awslogs log groups and Secrets Manager secrets of ``td`` exist."""
    problems = []
    iam, logs, secrets = Client("iam"), Client("logs"), Client("secretsmanager")
    for key in ("executionRoleArn", "taskRoleArn"):
        role = str(td.get(key, "")).rsplit("/", 1)[-1]
        if role and not _exists(iam, "get_role", "NoSuchEntity", RoleName=role):
            problems.append(Problem(key, f"role {role} does not exist: create it (see iam/)"))
    for container in td.get("containerDefinitions", []):
        where = f"containerDefinitions[{container.get('name')}]"
        options = container.get("logConfiguration", {}).get("options", {})
        group = options.get("awslogs-group")
        if group and options.get("awslogs-create-group") != "true":
            found = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
            if not any(g["logGroupName"] == group for g in found):
                problems.append(
                    Problem(f"{where}.logConfiguration", f"log group {group} does not exist")
                )
        # Secrets injected by ECS (secrets.valueFrom), and secrets the application
        # reads itself by ARN (environment, e.g. the migration's DATABASE_OWNER_CREDENTIALS_ARN).
        named = [
            (f"{where}.secrets.{v.get('name')}", str(v.get("valueFrom", "")))
            for v in container.get("secrets", [])
        ] + [
            (f"{where}.environment.{v.get('name')}", str(v.get("value", "")))
            for v in container.get("environment", [])
        ]
        for field, value in named:
            if not value.startswith("arn:aws:secretsmanager:"):
                continue
            arn = ":".join(value.split(":")[:7])
            if not _exists(secrets, "describe_secret", "ResourceNotFoundException", SecretId=arn):
                problems.append(Problem(field, f"secret {arn} does not exist"))
    return problems


def _exists(client: Client, method: str, missing_code: str, **params: Any) -> bool:
    """Whether ``client.method(**params)`` finds its resource (``missing_code`` when not)."""
    try:
        getattr(client, method)(**params)
    except AwsError as exc:
        if error_code(exc) == missing_code:
            return False
        raise
    return True


def alarm_states(sd: dict[str, Any]) -> dict[str, str]:
    """The CloudWatch state (OK, ALARM, INSUFFICIENT_DATA) of each existing alarm of
    ``deploymentConfiguration.alarms``."""
    names = sd.get("deploymentConfiguration", {}).get("alarms", {}).get("alarmNames", [])
    if not names:
        return {}
    found = Client("cloudwatch").describe_alarms(AlarmNames=names, AlarmTypes=["MetricAlarm"])
    return {a["AlarmName"]: a["StateValue"] for a in found.get("MetricAlarms", [])}


def alarms(sd: dict[str, Any]) -> list[Problem]:
    """Every alarm of ``deploymentConfiguration.alarms`` exists in CloudWatch."""
    names = sd.get("deploymentConfiguration", {}).get("alarms", {}).get("alarmNames", [])
    existing = alarm_states(sd)
    return [
        Problem(
            "deploymentConfiguration.alarms",
            f"alarm {name} does not exist: deploy the monitoring stack "
            "(sbcntrctl infra deploy ENV --only monitoring, infra/README.md)",
        )
        for name in names
        if name not in existing
    ]


def subnets(sd: dict[str, Any], az_count: int | None) -> list[Problem]:
    """The service's subnets span at least ``az_count`` Availability Zones (None: unchecked)."""
    ids = sd.get("networkConfiguration", {}).get("awsvpcConfiguration", {}).get("subnets", [])
    if az_count is None or not ids:
        return []
    found = Client("ec2").describe_subnets(SubnetIds=ids)["Subnets"]
    zones = sorted({s["AvailabilityZone"] for s in found})
    if len(zones) >= az_count:
        return []
    return [
        Problem(
            "networkConfiguration.awsvpcConfiguration.subnets",
            f"cover {len(zones)} Availability Zones ({', '.join(zones)}) of the network's "
            f"{az_count}: give every app subnet (PRIVATE_SUBNET_3 with AzCount=3; "
            "sbcntrctl infra outputs ENV writes them)",
        )
    ]
