"""A moto server for the infrastructure tests, in this process, on a free port.

moto 5.2's CloudFormation cannot create ``AWS::SecretsManager::Secret``: it
skips the resource, and the platform stack's ``DbSecretArn`` output (which the
data stack imports and the backend's task definition needs) disappears. The
provider below fills that one gap: it creates the secret through moto's own
Secrets Manager, with the password generated as ``GenerateSecretString`` asks.
Every other resource moto lacks is left missing and checked from the parsed
templates instead (infra/README.md lists them).

moto's ECS cluster from a template keeps only its name: ``_cluster_from_template``
also applies the settings (Container Insights) and the capacity providers with
their default strategy, as CloudFormation does, so the deploy's check that the
service's capacity provider is attached sees what AWS would have.

moto's RDS instance lacks the ``DbiResourceId`` attribute CloudFormation
returns; the data stack's ``DatabaseResourceId`` output and the backend's
``rds-db:connect`` policy name it, so ``_database_attribute_with_resource_id``
returns moto's own resource id for it.

moto's KMS key from a template keeps ``KeyPolicy`` as the parsed object, and every
later DescribeKey of it fails (moto parses the policy as a string): ``_key_from_template``
stores it as JSON text, as KMS does.

moto's change sets also stop short of what CloudFormation does: executing one
neither resolves ``Fn::ImportValue`` (on creation) nor publishes the stack's
outputs and exports. ``_execute_change_set`` below executes a change set with
moto's own create-stack and update-stack code, which do both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from moto.cloudformation import models, parsing
from moto.core.common_models import CloudFormationModel
from moto.ecs.models import Cluster, ecs_backends
from moto.kms.models import Key
from moto.rds.models import DBInstance
from moto.secretsmanager.models import secretsmanager_backends
from moto.server import ThreadedMotoServer

from tests.support import free_port


class GeneratedSecret(CloudFormationModel):
    """``AWS::SecretsManager::Secret`` with ``GenerateSecretString`` (what platform.yml uses)."""

    def __init__(self, arn: str, account_id: str, region_name: str) -> None:
        self.arn = arn
        self.account_id = account_id
        self.region_name = region_name

    @property
    def physical_resource_id(self) -> str:
        return self.arn  # Ref of a secret is its ARN

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SecretsManager::Secret"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Id"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> GeneratedSecret:
        props = cloudformation_json["Properties"]
        backend = secretsmanager_backends[account_id][region_name]
        generate = props["GenerateSecretString"]
        password = json.loads(
            backend.get_random_password(
                password_length=int(generate.get("PasswordLength", 32)),
                exclude_characters=generate.get("ExcludeCharacters", ""),
                exclude_numbers=False,
                exclude_punctuation=False,
                exclude_uppercase=False,
                exclude_lowercase=False,
                include_space=False,
                require_each_included_type=True,
            )
        )["RandomPassword"]
        value = json.loads(generate["SecretStringTemplate"])
        value[generate["GenerateStringKey"]] = password
        created = json.loads(
            backend.create_secret(
                name=props.get("Name", resource_name),
                secret_string=json.dumps(value),
                secret_binary=None,
                description=props.get("Description"),
                tags=None,
                kms_key_id=props.get("KmsKeyId"),
                client_request_token=None,
                replica_regions=[],
                force_overwrite=False,
            )
        )
        return cls(created["ARN"], account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        backend = secretsmanager_backends[account_id][region_name]
        backend.delete_secret(resource_name, None, True)

    def is_created(self) -> bool:
        return True


def _cluster_from_template(
    resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> Cluster:
    props = cloudformation_json.get("Properties", {})
    strategy = [
        {"capacityProvider": s["CapacityProvider"], "weight": s["Weight"], "base": s["Base"]}
        for s in props.get("DefaultCapacityProviderStrategy", [])
    ]
    return ecs_backends[account_id][region_name].create_cluster(
        cluster_name=resource_name,
        cluster_settings=[
            {"name": s["Name"], "value": s["Value"]} for s in props.get("ClusterSettings", [])
        ],
        capacity_providers=props.get("CapacityProviders"),
        default_capacity_provider_strategy=strategy or None,
    )


_moto_key_from_template = Key.create_from_cloudformation_json


def _key_from_template(
    resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> Key:
    props = cloudformation_json["Properties"]
    if isinstance(props.get("KeyPolicy"), dict):
        props = {**props, "KeyPolicy": json.dumps(props["KeyPolicy"])}
    return _moto_key_from_template(
        resource_name, {**cloudformation_json, "Properties": props}, account_id, region_name
    )


def _execute_change_set(
    self: models.CloudFormationBackend, change_set_name: str, stack_name: str | None = None
) -> None:
    change_set = self.change_sets.get(change_set_name) or next(
        cs for cs in self.change_sets.values() if cs.change_set_name == change_set_name
    )
    if change_set.change_set_type == "CREATE":
        del self.stacks[change_set.stack_id]  # the REVIEW_IN_PROGRESS placeholder
        known = set(self.stacks)
        try:
            self.create_stack(
                change_set.stack_name,
                change_set.template,
                change_set.parameters,
                tags=change_set.tags,
            )
        except Exception:
            # CloudFormation would keep a ROLLBACK_COMPLETE stack; moto's half-made
            # one breaks every later DescribeStacks, so it goes.
            for stack_id in set(self.stacks) - known:
                del self.stacks[stack_id]
            raise
    else:
        stack = self.get_stack(change_set.stack_name)
        stack.update(change_set.template, parameters=change_set.parameters, tags=change_set.tags)
        for export in stack.exports:
            self.exports[export.name] = export
    change_set.execution_status = "EXECUTE_COMPLETE"


_database_attribute = DBInstance.get_cfn_attribute


def _database_attribute_with_resource_id(self: DBInstance, attribute_name: str) -> Any:
    # CloudFormation returns DbiResourceId for AWS::RDS::DBInstance; moto knows the
    # value (dbi_resource_id) but not the attribute.
    if attribute_name == "DbiResourceId":
        return self.dbi_resource_id
    return _database_attribute(self, attribute_name)


@contextmanager
def moto_server() -> Iterator[str]:
    """Start the server (with the secret provider registered); yield its URL."""
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()  # the model list is read from subclasses once, then cached
    models.CloudFormationBackend.execute_change_set = _execute_change_set  # type: ignore[method-assign]
    Cluster.create_from_cloudformation_json = staticmethod(_cluster_from_template)
    DBInstance.get_cfn_attribute = _database_attribute_with_resource_id  # type: ignore[method-assign]
    DBInstance.has_cfn_attr = classmethod(  # type: ignore[method-assign, assignment]
        lambda _cls, attr: attr in ("Endpoint.Address", "Endpoint.Port", "DbiResourceId")
    )
    Key.create_from_cloudformation_json = staticmethod(_key_from_template)  # type: ignore[method-assign]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    httpx.get(f"{url}/moto-api/", timeout=10).raise_for_status()
    try:
        yield url
    finally:
        server.stop()
