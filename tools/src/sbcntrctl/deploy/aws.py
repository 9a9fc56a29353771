"""boto3 clients whose failures are one line: the call, the resource and the fix.

The region is :mod:`sbcntrctl.awsenv`'s rule; credentials and endpoint come
from the standard AWS environment (``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` for an
emulator).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from sbcntrctl import awsenv


class DeployError(Exception):
    """A deploy step failed; the message is one line saying which and why."""


class AwsError(DeployError):
    """An AWS call failed: ``str()`` names the call, the resource and the fix."""

    def __init__(self, operation: str, resource: str, reason: str, fix: str) -> None:
        super().__init__(f"{operation} {resource}: {reason} (fix: {fix})")
        self.operation, self.resource, self.reason, self.fix = operation, resource, reason, fix


# Error code -> what the operator does about it. Codes absent here fall back on
# the message AWS sent, which names the offending value.
FIXES = {
    "ClusterNotFoundException": "create the cluster, or set ECS_CLUSTER to an existing one",
    "ServiceNotFoundException": "deploy the service first (sbcntrctl deploy deploy SERVICE)",
    "ServiceNotActiveException": "the service was deleted: deploy it again",
    "AccessDeniedException": "grant this action to the caller's IAM role or user",
    "AccessDenied": "grant this action to the caller's IAM role or user",
    "UnrecognizedClientException": "the credentials are not valid in this account: check them",
    "ExpiredTokenException": "the session expired: sign in again (aws sso login)",
    "ExpiredToken": "the session expired: sign in again (aws sso login)",
    "ThrottlingException": "AWS is throttling the calls: retry in a minute",
    "RepositoryNotFoundException": "create the ECR repository and push the image",
    "ImageNotFoundException": "build and push the image with this tag",
    "ObjectNotFoundException": "the scaling object is gone already: nothing to remove",
    "PlatformUnknownException": "use a platformVersion Fargate supports (1.4.0 or LATEST)",
}
DEFAULT_FIX = "correct the value AWS names in the message"

# Parameters that say which resource a call is about, most specific first.
RESOURCE_PARAMETERS = (
    "service",
    "serviceName",
    "services",
    "taskDefinition",
    "family",
    "familyPrefix",
    "resourceArn",
    "ResourceId",
    "PolicyName",
    "ScheduledActionName",
    "repositoryName",
    "ecrRepositoryPrefixes",
    "StackName",
    "RuleArn",
    "RuleArns",
    "cluster",
    "clusters",
)


def describe_resource(params: dict[str, Any]) -> str:
    """The resource a call concerns, from its parameters (``cluster/service`` when both)."""
    names = []
    for key in RESOURCE_PARAMETERS:
        value = params.get(key)
        if value:
            names.append(",".join(value) if isinstance(value, list) else str(value))
    service = params.get("service") or params.get("serviceName") or params.get("services")
    if params.get("cluster") and service:
        return f"{params['cluster']}/{','.join(service) if isinstance(service, list) else service}"
    return names[0] if names else "(account)"


def explain(operation: str, params: dict[str, Any], error: Exception) -> AwsError:
    """Turn a botocore failure into one line naming the call, the resource and the fix."""
    resource = describe_resource(params)
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        code = str(info.get("Code", "Error"))
        message = _shorten(" ".join(str(info.get("Message", "")).split()))
        return AwsError(operation, resource, f"{code}: {message}", FIXES.get(code, DEFAULT_FIX))
    if isinstance(error, EndpointConnectionError):
        return AwsError(
            operation,
            resource,
            f"cannot reach {error.kwargs.get('endpoint_url', 'the endpoint')}",
            "check AWS_REGION, AWS_ENDPOINT_URL and the network (proxy, VPN)",
        )
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return AwsError(
            operation,
            resource,
            "no AWS credentials",
            "set AWS_PROFILE (aws sso login) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        )
    if isinstance(error, NoRegionError):
        return AwsError(operation, resource, "no region", awsenv.NO_REGION_FIX)
    return AwsError(operation, resource, _shorten(" ".join(str(error).split())), DEFAULT_FIX)


def _shorten(text: str, limit: int = 300) -> str:
    """At most ``limit`` characters (an emulator's error page can be long)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Client:
    """A boto3 client whose every call raises :class:`AwsError` instead of a traceback."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._client: Any = None

    def _boto(self) -> Any:
        if self._client is None:
            try:
                self._client = awsenv.client(self._service)
            except awsenv.RegionError as exc:
                raise AwsError(f"{self._service} client", "(account)", exc.reason, exc.fix) from exc
        return self._client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(**params: Any) -> Any:
            method = getattr(self._boto(), name)
            operation = self._boto().meta.method_to_api_mapping.get(name, name)
            try:
                return method(**params)
            except (ClientError, BotoCoreError) as exc:
                raise explain(operation, params, exc) from exc

        return call


def error_code(error: AwsError) -> str:
    """The AWS error code of a failed call ('' when the call never reached AWS)."""
    return error.reason.split(":", 1)[0] if ":" in error.reason else ""
