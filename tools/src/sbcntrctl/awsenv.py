"""The one region rule and client factory of every ``sbcntrctl`` command.

Region: ``AWS_REGION`` (what the AWS CLI v2, the other SDKs and ecspresso
read), else ``AWS_DEFAULT_REGION``, else the region of the profile
(``AWS_PROFILE`` or ``default`` in ``~/.aws/config``), else
:class:`RegionError` naming both variables. boto3 alone reads only the last
two, so every boto3 client of the tools is made here, by :func:`client`.
Credentials and endpoint stay boto3's own (``AWS_PROFILE``,
``AWS_ENDPOINT_URL`` for an emulator).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ProfileNotFound

NO_REGION_FIX = (
    "set AWS_REGION (or AWS_DEFAULT_REGION), e.g. export AWS_REGION=ap-northeast-1, "
    "or give the profile a region"
)


class RegionError(Exception):
    """No region (or an unusable profile): ``str()`` is one line, the reason and the fix."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(f"{reason} (fix: {fix})")
        self.reason, self.fix = reason, fix


def region() -> str:
    """The region every command uses (the rule in the module docstring)."""
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = os.environ.get(variable, "").strip()
        if value:
            return value
    try:
        from_profile = session().region_name
    except ProfileNotFound as exc:
        fix = "correct AWS_PROFILE, or add the profile (aws configure --profile NAME)"
        raise RegionError(str(exc), fix) from exc
    if not from_profile:
        raise RegionError("no AWS region", NO_REGION_FIX)
    return str(from_profile)


def client(service: str) -> Any:
    """A boto3 client of ``service`` in :func:`region`.

    Raises :class:`RegionError` without a region, and for a profile or
    configuration boto3 cannot use (the message says what to fix).
    """
    name = region()
    try:
        return session().client(service, region_name=name)
    except BotoCoreError as exc:
        fix = "check AWS_PROFILE and ~/.aws/config"
        raise RegionError(f"{service} client in {name}: {exc}", fix) from exc


def session() -> boto3.session.Session:
    """The boto3 session every client of the tools comes from (one per set of ``AWS_*``
    variables: boto3's default session keeps the first it saw). Its ``events`` see
    every call the tools make."""
    return _session(_aws_variables())


def _aws_variables() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))


@lru_cache(maxsize=4)
def _session(variables: tuple[tuple[str, str], ...]) -> boto3.session.Session:
    """One session per AWS environment: boto3's default session keeps the first it saw."""
    del variables  # the cache key: the session reads the same values from os.environ
    return boto3.session.Session()
