"""Error notification: CloudWatch Logs subscription filter -> this Lambda -> SNS.

The subscription filter on each service's log group passes the lines whose
``level`` is ``error`` or ``critical``. CloudWatch Logs delivers them in
batches: ``{"awslogs": {"data": base64(gzip(JSON))}}`` with ``logGroup``,
``logStream`` and ``logEvents`` (each ``{"id", "timestamp", "message"}``).

One invocation sends at most one SNS message: a summary of its batch (the
first ``MAX_DETAILED`` lines in full: service, route, status, message, request
id and a link to the request's X-Ray trace). An error storm is one mail per
``WINDOW_SECONDS`` per log group: while a window is open, further lines are
only counted (a conditional write on a DynamoDB item decides, so concurrent
invocations agree), and the next summary says how many were held back.

Environment: ``TOPIC_ARN``, ``STATE_TABLE``, ``WINDOW_SECONDS`` (300),
``MAX_DETAILED`` (10), ``ENV_NAME``; ``AWS_REGION`` is set by Lambda.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

SUBJECT_LIMIT = 100  # SNS: subjects of at most 100 characters
MESSAGE_LIMIT = 200_000  # SNS: at most 256 KB; keep room for the envelope


@dataclass(frozen=True)
class ErrorLine:
    timestamp_ms: int
    service: str
    level: str
    message: str
    route: str
    status: int | None
    request_id: str
    trace_id: str
    exception: str

    @classmethod
    def parse(cls, event: dict[str, Any], log_group: str) -> ErrorLine:
        """A log event as the services write it (docs/log-schema.md); raw text if not JSON."""
        try:
            line = json.loads(event["message"])
        except (TypeError, ValueError):
            line = None
        if not isinstance(line, dict):
            line = {"event": str(event["message"])}
        status = line.get("status")
        return cls(
            timestamp_ms=int(event["timestamp"]),
            service=str(line.get("service") or log_group.rsplit("/", 1)[-1]),
            level=str(line.get("level", "error")),
            message=str(line.get("event", "")),
            route=str(line.get("route") or line.get("path") or ""),
            status=status if isinstance(status, int) else None,
            request_id=str(line.get("request_id", "")),
            trace_id=str(line.get("trace_id", "")),
            exception=str(line.get("exception", "")),
        )


def decode(event: dict[str, Any]) -> dict[str, Any]:
    """The subscription filter's payload: base64, gzip, JSON."""
    data: dict[str, Any] = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    return data


def trace_url(region: str, trace_id: str) -> str:
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#xray:traces/{trace_id}"
    )


def _when(timestamp_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(timestamp_ms / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def summary(
    env_name: str,
    log_group: str,
    lines: list[ErrorLine],
    held_back: int,
    region: str,
    max_detailed: int,
) -> tuple[str, str]:
    """(subject, body) of one notification."""
    services = sorted({line.service for line in lines})
    subject = f"[sbcntr {env_name}] {len(lines)} error line(s) from {', '.join(services)}"
    body = [f"{len(lines)} error line(s) in {log_group}."]
    if held_back:
        body.append(f"{held_back} more error line(s) since the last mail were held back.")
    for line in lines[:max_detailed]:
        body += [
            "",
            f"{_when(line.timestamp_ms)}  {line.service}  {line.level}",
            f"  message:    {line.message}",
            f"  route:      {line.route or '-'}",
            f"  status:     {line.status if line.status is not None else '-'}",
            f"  request id: {line.request_id or '-'}",
            f"  trace:      {trace_url(region, line.trace_id) if line.trace_id else '-'}",
        ]
        if line.exception:
            body.append("  " + line.exception.strip().splitlines()[-1])
    if len(lines) > max_detailed:
        body += ["", f"... and {len(lines) - max_detailed} more in this batch."]
    text = "\n".join(body)
    return subject[:SUBJECT_LIMIT], text[:MESSAGE_LIMIT]


class RateLimit:
    """One notification per window per key, decided by a DynamoDB conditional write."""

    def __init__(self, table: Any, window_seconds: float) -> None:
        self.table = table
        self.window_seconds = window_seconds

    def open_window(self, key: str, count: int, now: float) -> int | None:
        """Held-back count of the previous window if a new one opened (send); None if not."""
        try:
            old = self.table.update_item(
                Key={"key": key},
                UpdateExpression="SET sent_at = :now, held_back = :zero",
                ConditionExpression="attribute_not_exists(sent_at) OR sent_at < :cutoff",
                ExpressionAttributeValues={
                    ":now": int(now),
                    ":zero": 0,
                    ":cutoff": int(now - self.window_seconds),
                },
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            self.table.update_item(
                Key={"key": key},
                UpdateExpression="ADD held_back :n",
                ExpressionAttributeValues={":n": count},
            )
            return None
        return int(old.get("Attributes", {}).get("held_back", 0))


def handle(
    event: dict[str, Any],
    sns: Any,
    limit: RateLimit,
    topic_arn: str,
    env_name: str,
    region: str,
    max_detailed: int = 10,
    now: float | None = None,
) -> dict[str, Any]:
    payload = decode(event)
    if payload.get("messageType") != "DATA_MESSAGE":
        return {"sent": False, "lines": 0}  # CONTROL_MESSAGE: CloudWatch's reachability check
    log_group = payload["logGroup"]
    lines = [ErrorLine.parse(e, log_group) for e in payload.get("logEvents", [])]
    if not lines:
        return {"sent": False, "lines": 0}
    held_back = limit.open_window(log_group, len(lines), time.time() if now is None else now)
    if held_back is None:
        return {"sent": False, "lines": len(lines)}
    subject, message = summary(env_name, log_group, lines, held_back, region, max_detailed)
    sns.publish(TopicArn=topic_arn, Subject=subject, Message=message)
    return {"sent": True, "lines": len(lines), "held_back": held_back}


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point: configuration from the environment."""
    region = os.environ["AWS_REGION"]
    table = boto3.resource("dynamodb", region_name=region).Table(os.environ["STATE_TABLE"])
    return handle(
        event,
        boto3.client("sns", region_name=region),
        RateLimit(table, float(os.environ.get("WINDOW_SECONDS", "300"))),
        os.environ["TOPIC_ARN"],
        os.environ.get("ENV_NAME", "dev"),
        region,
        int(os.environ.get("MAX_DETAILED", "10")),
    )
