"""Which task serves a request: the ECS task and Availability Zone, or the host.

On ECS (Fargate or EC2) the agent publishes the task metadata endpoint v4 at
``ECS_CONTAINER_METADATA_URI_V4``; ``GET {uri}/task`` answers the task's ARN
and Availability Zone among other things (AWS documentation, "Amazon ECS task
metadata endpoint version 4"). The runner that serves reads it once, before
serving (:func:`servicekit.runner.serve`), and hands it to the application:
neither changes during a task's life, and building an application (in tests,
say) asks nothing of the network. Elsewhere the identity is the host name
and the process id, so two processes on one machine are told apart.

Every response carries the identity in the ``X-Served-By`` header
(``task=<id>; az=<zone>``, ``az`` only when known), so a caller can say
which task answered it: the frontend shows its own and the backend's in its
page footer, and ``dev.py up`` checks that ``/readyz`` was answered by the
process it started.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from typing import NamedTuple

from servicekit.logs import get_logger

SERVED_BY_HEADER = "x-served-by"
METADATA_TIMEOUT_SECONDS = 1.0

log = get_logger("servicekit.identity")


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


def local_identity() -> TaskIdentity:
    """The identity of a process outside ECS: the host name and the process id."""
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
        return local_identity()
    zone = task.get("AvailabilityZone")
    return TaskIdentity(task=arn.rsplit("/", 1)[-1], zone=str(zone) if zone else None, on_ecs=True)


def task_identity(metadata_uri: str | None) -> TaskIdentity:
    """This process's identity: from the metadata endpoint on ECS, else the host's.

    ``metadata_uri`` is the settings' ``ECS_CONTAINER_METADATA_URI_V4``. Blocks
    for at most :data:`METADATA_TIMEOUT_SECONDS` on ECS: call it once, before
    serving.
    """
    return read_task_metadata(metadata_uri) if metadata_uri else local_identity()
