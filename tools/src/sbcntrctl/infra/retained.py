"""What an environment's deleted stacks left behind, read from the templates.

Resources with ``DeletionPolicy: Retain`` outlive their stack: the log groups,
the log bucket, the database secret and the two KMS keys that encrypt them
(kept so the kept data stays readable). Their names are fixed
(``/sbcntr/<env>/frontend``, ``sbcntr/<env>/database``...), so the same
environment cannot be created again while they exist: :func:`blocking` names
them before ``infra deploy`` tries, and :func:`purge` deletes them for
``infra delete --purge-retained`` (the keys last, scheduled for deletion after
``KEY_PENDING_DAYS``, once nothing they encrypt is left).

Only resources of stacks that no longer exist are considered: a running
stack's resources are its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbcntrctl import awsenv
from sbcntrctl.deploy.aws import AwsError, Client, error_code
from sbcntrctl.infra import cloudformation
from sbcntrctl.infra.stacks import INFRA_DIR, Stack

KEY_PENDING_DAYS = 7  # the shortest waiting period KMS allows (7-30 days)
# Property that names each retained type (for a key: its description, which names the env).
NAME_PROPERTY = {
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::KMS::Key": "Description",
}
# Types whose fixed name makes a new stack fail with "already exists".
NAMED = ("AWS::Logs::LogGroup", "AWS::S3::Bucket", "AWS::SecretsManager::Secret")


@dataclass(frozen=True)
class Retained:
    """One kept resource: its stack, logical id, type and name (a key: its id)."""

    stack: str
    logical_id: str
    type: str
    name: str

    def __str__(self) -> str:
        return f"{self.type.split('::')[-1]} {self.name}"


def declared(stack: Stack, env: str, directory: Path = INFRA_DIR) -> list[Retained]:
    """The retained resources ``stack``'s template declares, named for ``env``."""
    values = {
        "EnvName": env,
        "AWS::Region": awsenv.region(),
        "AWS::AccountId": _account(),
        "AWS::Partition": "aws",
    }
    found = []
    for logical_id, resource in stack.template(directory).get("Resources", {}).items():
        kind = resource.get("Type", "")
        if resource.get("DeletionPolicy") != "Retain" or kind not in NAME_PROPERTY:
            continue
        name = resource.get("Properties", {}).get(NAME_PROPERTY[kind])
        if isinstance(name, dict) and isinstance(name.get("Fn::Sub"), str):
            name = re.sub(r"\$\{([^}]+)\}", lambda m: values.get(m[1], m[0]), name["Fn::Sub"])
        if isinstance(name, str):
            found.append(Retained(stack.name(env), logical_id, kind, name))
    return found


def left_behind(env: str, stacks: list[Stack], directory: Path = INFRA_DIR) -> list[Retained]:
    """The retained resources of ``stacks`` that exist while their stack does not."""
    found: list[Retained] = []
    for stack in stacks:
        if stack.shared or cloudformation.describe(stack.name(env)) is not None:
            continue
        for resource in declared(stack, env, directory):
            found += _existing(resource)
    return found


def blocking(env: str, stack: Stack, directory: Path = INFRA_DIR) -> list[Retained]:
    """What makes creating ``stack`` for ``env`` fail: kept resources with its fixed names."""
    return [r for r in left_behind(env, [stack], directory) if r.type in NAMED]


def purge(resources: list[Retained]) -> Iterator[str]:
    """Delete ``resources``, keys last (scheduled); one line per resource."""
    for resource in sorted(resources, key=lambda r: r.type == "AWS::KMS::Key"):
        _delete(resource)
        if resource.type == "AWS::KMS::Key":
            yield f"{resource}: deletion scheduled in {KEY_PENDING_DAYS} days"
        else:
            yield f"{resource}: deleted"


def _account() -> str:
    return str(Client("sts").get_caller_identity()["Account"])


def _existing(resource: Retained) -> list[Retained]:
    """``resource`` if it exists (a key: each of that description still usable)."""
    if resource.type == "AWS::Logs::LogGroup":
        groups = Client("logs").describe_log_groups(logGroupNamePrefix=resource.name)
        exists = any(g["logGroupName"] == resource.name for g in groups["logGroups"])
        return [resource] if exists else []
    if resource.type == "AWS::SecretsManager::Secret":
        try:
            secret = Client("secretsmanager").describe_secret(SecretId=resource.name)
        except AwsError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return []
            raise
        return [] if secret.get("DeletedDate") else [resource]
    if resource.type == "AWS::S3::Bucket":
        try:
            Client("s3").head_bucket(Bucket=resource.name)
        except AwsError as exc:
            if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                return []
            raise
        return [resource]
    return [
        Retained(resource.stack, resource.logical_id, resource.type, key_id)
        for key_id in _keys_described(resource.name)
    ]


def _keys_described(description: str) -> list[str]:
    kms = Client("kms")
    keys: list[str] = []
    marker: dict[str, Any] = {}
    while True:
        page = kms.list_keys(**marker)
        for key in page["Keys"]:
            meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
            usable = meta.get("KeyState") in ("Enabled", "Disabled")  # not pending deletion
            if usable and (meta.get("KeyManager"), meta.get("Description")) == (
                "CUSTOMER",
                description,
            ):
                keys.append(key["KeyId"])
        if not page.get("Truncated"):
            return keys
        marker = {"Marker": page["NextMarker"]}


def _delete(resource: Retained) -> None:
    if resource.type == "AWS::Logs::LogGroup":
        Client("logs").delete_log_group(logGroupName=resource.name)
    elif resource.type == "AWS::SecretsManager::Secret":
        Client("secretsmanager").delete_secret(
            SecretId=resource.name, ForceDeleteWithoutRecovery=True
        )
    elif resource.type == "AWS::S3::Bucket":
        _empty_and_delete_bucket(resource.name)
    else:
        Client("kms").schedule_key_deletion(
            KeyId=resource.name, PendingWindowInDays=KEY_PENDING_DAYS
        )


def _empty_and_delete_bucket(bucket: str) -> None:
    """Every object version and delete marker (the bucket is versioned), then the bucket."""
    s3 = Client("s3")
    marker: dict[str, str] = {}
    while True:
        page = s3.list_object_versions(Bucket=bucket, **marker)
        objects = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if objects:  # at most 1000 per page, the DeleteObjects limit
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        if not page.get("IsTruncated"):
            break
        marker = {
            "KeyMarker": page["NextKeyMarker"],
            "VersionIdMarker": page["NextVersionIdMarker"],
        }
    s3.delete_bucket(Bucket=bucket)
