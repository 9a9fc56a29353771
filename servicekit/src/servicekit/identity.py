"""Which task serves a request: the ECS task and Availability Zone, or the host.

On ECS (Fargate or EC2) the agent publishes the task metadata endpoint v4 at
``ECS_CONTAINER_METADATA_URI_V4``; ``GET {uri}/task`` answers the task's ARN
and Availability Zone among other things (AWS documentation, "Amazon ECS task
metadata endpoint version 4"). It is read once, at start-up, and cached:
neither changes during a task's life. Elsewhere the identity is the host name
and the process id, so two processes on one machine are told apart.

Every response carries the identity in the ``X-Served-By`` header
(``task=<id>; az=<zone>``, ``az`` only when known), so a caller can say
which task answered it: the frontend shows its own and the backend's in its
page footer, and ``dev.py up`` checks that ``/readyz`` was answered by the
process it started.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import urllib.error
import urllib.request
from typing import NamedTuple

from servicekit.logs import get_logger

METADATA_ENV = "ECS_CONTAINER_METADATA_URI_V4"
SERVED_BY_HEADER = "x-served-by"
METADATA_TIMEOUT_SECONDS = 1.0

log = get_logger("servicekit.identity")


def on_ecs() -> bool:
    """Whether this process runs in an ECS task (the agent sets :data:`METADATA_ENV`)."""
    return METADATA_ENV in os.environ


class TaskIdentity(NamedTuple):
    """What a person needs to tell tasks apart: a short task id and its zone."""

    task: str  # the ECS task id (the ARN's last part), else "<host name>:<pid>"
    zone: str | None  # the Availability Zone, when the metadata endpoint gives it
    on_ecs: bool = False  # read from the task metadata endpoint (never from a header)

    def header_value(self) -> str:
        """The ``X-Served-By`` value: ``task=<id>`` and ``; az=<zone>`` when known."""
        return f"task={self.task}" + (f"; az={self.zone}" if self.zone else "")

    @classmethod
    def from_header(cls, value: str) -> TaskIdentity | None:
        """Read an ``X-Served-By`` value; None when it is not one."""
        fields = {}
        for part in value.split(";"):
            key, _, field = part.strip().partition("=")
            fields[key] = field.strip()
        task = fields.get("task")
        if not task:
            return None
        return cls(task=task[:128], zone=(fields.get("az") or "")[:64] or None)


def _local_identity() -> TaskIdentity:
    return TaskIdentity(task=f"{socket.gethostname()}:{os.getpid()}", zone=None)


def read_task_metadata(uri: str) -> TaskIdentity:
    """The identity from the ECS task metadata endpoint v4 at ``uri`` (``GET {uri}/task``).

    Falls back to the host identity, with a warning line, when the endpoint
    does not answer as documented.
    """
    try:
        with urllib.request.urlopen(  # noqa: S310 - the agent's link-local URL from ECS
            f"{uri.rstrip('/')}/task", timeout=METADATA_TIMEOUT_SECONDS
        ) as response:
            task = json.loads(response.read())
        arn = str(task["TaskARN"])
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("task metadata unavailable", endpoint=uri, cause=repr(exc))
        return _local_identity()
    zone = task.get("AvailabilityZone")
    return TaskIdentity(task=arn.rsplit("/", 1)[-1], zone=str(zone) if zone else None, on_ecs=True)


@functools.cache
def task_identity() -> TaskIdentity:
    """This process's identity, read once (the metadata endpoint on ECS, else the host)."""
    uri = os.environ.get(METADATA_ENV)
    return read_task_metadata(uri) if uri else _local_identity()
