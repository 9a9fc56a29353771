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
invocations agree), and the next summary says how many were held back. The
window is given back when the publish fails, and the invocation then fails so
that Lambda retries it (CloudWatch Logs invokes asynchronously: two retries):
a failed mail neither loses the batch nor silences the window.

Every message fits SNS (the Publish API reference,
https://docs.aws.amazon.com/sns/latest/api/API_Publish.html): the body at most
262,144 UTF-8 bytes, cut on a character boundary with a line saying so; the
subject one line of printable ASCII under 100 characters. A log event that
cannot be read (no timestamp, one out of range) is named in the mail and
skipped; the rest of its batch is sent.

Environment: ``TOPIC_ARN``, ``STATE_TABLE``, ``WINDOW_SECONDS`` (300),
``MAX_DETAILED`` (10), ``ENV_NAME``; ``AWS_REGION`` is set by Lambda.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

# SNS Publish (API reference, Publish): "Subjects must be ASCII text that begins
# with a letter, number, or punctuation mark; must not include line breaks or
# control characters; and must be less than 100 characters long." The message:
# "up to 256 KB (262,144 bytes, not 262,144 characters)".
SUBJECT_LIMIT = 99
MESSAGE_LIMIT_BYTES = 262_144
CUT_FOOTER = "\n\n[message cut at SNS's 256 KB limit: the full lines are in {log_group}]"
_NOT_SUBJECT_TEXT = re.compile(r"[^\x20-\x7e]+")

log = logging.getLogger(__name__)


class UnreadableEventError(ValueError):
    """A log event without a usable id, timestamp or message."""


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
    exception: str  # the last line of the traceback, when there is one

    @classmethod
    def parse(cls, event: dict[str, Any], log_group: str) -> ErrorLine:
        """A log event as the services write it (docs/log-schema.md); raw text if not JSON.

        Raises :class:`UnreadableEventError` for an event without a message or with
        a timestamp that is no instant.
        """
        try:
            timestamp_ms = int(event["timestamp"])
            _when(timestamp_ms)
            raw = event["message"]
        except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
            msg = f"{type(exc).__name__}: {exc}"
            raise UnreadableEventError(msg[:200]) from exc
        try:
            line = json.loads(raw)
        except (TypeError, ValueError, RecursionError):  # RecursionError: nested too deep
            line = None
        if not isinstance(line, dict):
            line = {"event": str(raw)}
        status = line.get("status")
        exception = str(line.get("exception", "")).strip()
        return cls(
            timestamp_ms=timestamp_ms,
            service=str(line.get("service") or log_group.rsplit("/", 1)[-1]),
            level=str(line.get("level", "error")),
            message=str(line.get("event", "")),
            route=str(line.get("route") or line.get("path") or ""),
            status=status if isinstance(status, int) else None,
            request_id=str(line.get("request_id", "")),
            trace_id=str(line.get("trace_id", "")),
            exception=exception.splitlines()[-1] if exception else "",
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


def subject_text(text: str) -> str:
    """``text`` as an SNS subject: one line of printable ASCII, under 100 characters."""
    cleaned = _NOT_SUBJECT_TEXT.sub(" ", text).strip()
    if len(cleaned) > SUBJECT_LIMIT:
        cleaned = cleaned[: SUBJECT_LIMIT - 3].rstrip() + "..."
    return cleaned or "error lines"


def message_text(text: str, log_group: str) -> str:
    """``text`` cut to SNS's message limit in UTF-8 bytes, never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= MESSAGE_LIMIT_BYTES:
        return text
    footer = CUT_FOOTER.format(log_group=log_group)
    room = MESSAGE_LIMIT_BYTES - len(footer.encode("utf-8"))
    return data[:room].decode("utf-8", "ignore") + footer


def summary(
    env_name: str,
    log_group: str,
    lines: list[ErrorLine],
    held_back: int,
    region: str,
    max_detailed: int,
    unreadable: Sequence[str] = (),
) -> tuple[str, str]:
    """(subject, body) of one notification, within SNS's limits.

    ``unreadable`` names the events that could not be read (id and why).
    """
    services = sorted({line.service for line in lines})
    count = len(lines) + len(unreadable)
    subject = f"[sbcntr {env_name}] {count} error line(s) from {', '.join(services) or '-'}"
    body = [f"{count} error line(s) in {log_group}."]
    if held_back:
        body.append(f"{held_back} more error line(s) since the last mail were held back.")
    if unreadable:
        body.append(f"{len(unreadable)} log event(s) could not be read: {'; '.join(unreadable)}")
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
            body.append("  " + line.exception)
    if len(lines) > max_detailed:
        body += ["", f"... and {len(lines) - max_detailed} more in this batch."]
    return subject_text(subject), message_text("\n".join(body), log_group)


class RateLimit:
    """One notification per window per key, decided by a DynamoDB conditional write."""

    def __init__(self, table: Any, window_seconds: float) -> None:
        self.table = table
        self.window_seconds = window_seconds

    def open_window(self, key: str, count: int, now: float) -> Window | None:
        """The window opened for this send; None when one is open (``count`` held back)."""
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
        attributes = old.get("Attributes", {})
        previous = attributes.get("sent_at")
        return Window(
            key,
            int(now),
            None if previous is None else int(previous),
            int(attributes.get("held_back", 0)),
        )

    def give_back(self, window: Window, count: int) -> None:
        """Undo :meth:`open_window` after a failed send: the previous window and its
        held-back count come back (with what was held back meanwhile), so that the
        next attempt sends."""
        restore = "REMOVE sent_at" if window.previous_sent_at is None else "SET sent_at = :previous"
        values: dict[str, Any] = {":ours": window.sent_at, ":held": window.held_back}
        if window.previous_sent_at is not None:
            values[":previous"] = window.previous_sent_at
        separator = " SET" if window.previous_sent_at is None else ","
        try:
            self.table.update_item(
                Key={"key": window.key},
                UpdateExpression=f"{restore}{separator} held_back = held_back + :held",
                ConditionExpression="sent_at = :ours",
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            # Another invocation has opened a newer window since: it stands.


@dataclass(frozen=True)
class Window:
    """A notification window this invocation opened (what :meth:`RateLimit.give_back` undoes)."""

    key: str
    sent_at: int
    previous_sent_at: int | None
    held_back: int  # the previous window's count, reported by this send


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
    lines: list[ErrorLine] = []
    unreadable: list[str] = []
    for event in payload.get("logEvents", []):
        try:
            lines.append(ErrorLine.parse(event, log_group))
        except UnreadableEventError as exc:
            event_id = str(event.get("id", "?"))[:64] if isinstance(event, dict) else "?"
            log.warning("unreadable log event %s in %s: %s", event_id, log_group, exc)
            unreadable.append(f"{event_id} ({exc})")
    count = len(lines) + len(unreadable)
    if not count:
        return {"sent": False, "lines": 0}
    window = limit.open_window(log_group, count, time.time() if now is None else now)
    if window is None:
        return {"sent": False, "lines": count}
    subject, message = summary(
        env_name, log_group, lines, window.held_back, region, max_detailed, unreadable
    )
    try:
        sns.publish(TopicArn=topic_arn, Subject=subject, Message=message)
    except Exception:
        limit.give_back(window, count)
        raise
    return {"sent": True, "lines": count, "held_back": window.held_back}


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
