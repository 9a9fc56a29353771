"""The error notifier Lambda on real subscription-filter payloads and a moto server.

Payloads are built as CloudWatch Logs sends them (base64 of gzip of JSON) from
real lines of the services' log schema; SNS delivery is read back from an SQS
queue subscribed to the topic; the rate limit's state lives in DynamoDB.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from error_notifier import handler
from tests.tools.deploy_support import aws_env
from tests.tools.test_deploy import moto_server

__all__ = ["moto_server"]

REGION = "ap-northeast-1"
GROUP = "/sbcntr/stg/backend"
TRACE = "1-6b087999-94ea786f7fa0b78ab7c4eb27"


def payload(lines: list[Any], message_type: str = "DATA_MESSAGE") -> dict[str, Any]:
    data = {
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": GROUP,
        "logStream": "cwl.backend-firelens-0a1b2c",
        "subscriptionFilters": ["sbcntr-stg-backend-errors"],
        "logEvents": [
            {
                "id": str(n),
                "timestamp": 1_795_000_000_000 + n,
                "message": line if isinstance(line, str) else json.dumps(line),
            }
            for n, line in enumerate(lines)
        ],
    }
    packed = base64.b64encode(gzip.compress(json.dumps(data).encode())).decode()
    return {"awslogs": {"data": packed}}


def error_line(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "method": "POST",
        "path": "/v1/items",
        "status": 500,
        "duration_ms": 3.1,
        "event": "request",
        "logger": "servicekit.access",
        "level": "error",
        "timestamp": "2026-11-27T01:02:03.004Z",
        "service": "backend",
        "request_id": f"req-{n}",
        "trace_id": TRACE,
        "exception": "Traceback (most recent call last):\n  ...\nRuntimeError: disk full",
        **extra,
    }


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for key, value in aws_env(moto_server).items():
        monkeypatch.setenv(key, value)
    dynamodb = boto3.resource("dynamodb")
    table = dynamodb.create_table(
        TableName="sbcntr-stg-error-notifier",
        KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="sbcntr-stg-alerts")["TopicArn"]
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="mailbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return {"table": table, "sns": sns, "topic": topic, "sqs": sqs, "queue": queue}


def mails(aws: dict[str, Any]) -> list[dict[str, Any]]:
    got = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


def call(aws: dict[str, Any], event: dict[str, Any], now: float) -> dict[str, Any]:
    limit = handler.RateLimit(aws["table"], 300)
    return handler.handle(event, aws["sns"], limit, aws["topic"], "stg", REGION, 10, now)


def test_a_batch_is_one_readable_mail_with_the_trace_link(aws: dict[str, Any]) -> None:
    result = call(aws, payload([error_line(1), error_line(2), "Traceback (raw text)"]), 1000)
    assert result == {"sent": True, "lines": 3, "held_back": 0}
    [mail] = mails(aws)
    assert mail["Subject"] == "[sbcntr stg] 3 error line(s) from backend"
    body = mail["Message"]
    assert "request id: req-1" in body
    assert "route:      /v1/items" in body
    assert "status:     500" in body
    assert "RuntimeError: disk full" in body
    assert f"#xray:traces/{TRACE}" in body
    assert f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}" in body
    assert "Traceback (raw text)" in body  # a line that is not JSON still reaches the mail


def test_an_error_storm_is_one_mail_per_window_and_the_next_counts_the_rest(
    aws: dict[str, Any],
) -> None:
    assert call(aws, payload([error_line(0)]), 1000)["sent"]
    for n in range(1, 30):  # 29 more batches of 5 inside the window
        assert not call(aws, payload([error_line(n)] * 5), 1000 + n)["sent"]
    assert len(mails(aws)) == 1
    result = call(aws, payload([error_line(99)]), 1000 + 301)  # the window has passed
    assert result == {"sent": True, "lines": 1, "held_back": 145}
    [mail] = mails(aws)
    assert "145 more error line(s) since the last mail were held back." in mail["Message"]


# SNS's limits, from the Publish API reference
# (https://docs.aws.amazon.com/sns/latest/api/API_Publish.html): a message of
# "up to 256 KB (262,144 bytes, not 262,144 characters)"; a subject of "ASCII
# text ... must not include line breaks or control characters; and must be
# less than 100 characters long". moto checks neither: the tests do.
SNS_MESSAGE_BYTES = 262_144
SNS_SUBJECT = re.compile(r"^[\x20-\x7e]{1,99}$")


def assert_fits_sns(mail: dict[str, Any]) -> None:
    assert len(mail["Message"].encode("utf-8")) <= SNS_MESSAGE_BYTES
    assert SNS_SUBJECT.match(mail["Subject"]), mail["Subject"]


def test_long_batches_are_cut_and_subjects_fit_sns_limits(aws: dict[str, Any]) -> None:
    lines = [error_line(n, service="backend" + "x" * 120) for n in range(25)]
    call(aws, payload(lines), 1000)
    [mail] = mails(aws)
    assert_fits_sns(mail)
    assert mail["Message"].count("request id:") == 10
    assert "... and 15 more in this batch." in mail["Message"]


@pytest.mark.parametrize("character", ["x", "\u00e9", "\u3042", "\U0001f600"])
def test_a_huge_message_is_cut_by_utf8_bytes_with_a_footer(
    aws: dict[str, Any], character: str
) -> None:
    """Ten lines of 100,000 characters: 1 to 4 bytes each in UTF-8."""
    lines = [error_line(n, event=character * 100_000) for n in range(10)]
    call(aws, payload(lines), 1000)
    [mail] = mails(aws)
    assert_fits_sns(mail)
    assert len(mail["Message"].encode("utf-8")) > SNS_MESSAGE_BYTES - 1000  # cut, not emptied
    assert mail["Message"].endswith(f"the full lines are in {GROUP}]")


def test_a_subject_is_one_ascii_line(aws: dict[str, Any]) -> None:
    line = error_line(1, service="back\nend\u00e9\t" + "\u3042" * 200)
    call(aws, payload([line]), 1000)
    [mail] = mails(aws)
    assert_fits_sns(mail)
    assert mail["Subject"].startswith("[sbcntr stg] 1 error line(s) from back end")


def test_malformed_events_are_reported_and_the_rest_sent(aws: dict[str, Any]) -> None:
    event = payload(
        [
            error_line(1, exception="   \n  "),  # whitespace only
            "[" * 100_000 + "]" * 100_000,  # nested deeper than the JSON parser goes
            error_line(2),
        ]
    )
    data = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    data["logEvents"][2]["timestamp"] = 10**20  # no instant
    data["logEvents"].append({"id": "no-message", "timestamp": 1_795_000_000_000})
    event = {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(data).encode()))}}
    result = call(aws, event, 1000)
    assert result == {"sent": True, "lines": 4, "held_back": 0}
    [mail] = mails(aws)
    assert_fits_sns(mail)
    body = mail["Message"]
    assert "2 log event(s) could not be read: 2 (" in body
    assert "no-message (KeyError" in body
    assert "request id: req-1" in body


def test_a_failed_publish_gives_the_window_back(aws: dict[str, Any]) -> None:
    """The invocation fails (Lambda retries it) and the next one sends."""
    limit = handler.RateLimit(aws["table"], 300)
    missing = aws["topic"] + "-missing"
    with pytest.raises(ClientError):
        handler.handle(
            payload([error_line(1)]), aws["sns"], limit, missing, "stg", REGION, 10, 1000
        )
    assert call(aws, payload([error_line(1)]), 1001)["sent"]  # the retry
    assert len(mails(aws)) == 1


def test_a_failed_publish_keeps_the_previous_window_and_its_count(aws: dict[str, Any]) -> None:
    assert call(aws, payload([error_line(0)]), 1000)["sent"]
    assert not call(aws, payload([error_line(1)] * 3), 1100)["sent"]  # 3 held back
    limit = handler.RateLimit(aws["table"], 300)
    missing = aws["topic"] + "-missing"
    with pytest.raises(ClientError):
        handler.handle(
            payload([error_line(2)]), aws["sns"], limit, missing, "stg", REGION, 10, 1400
        )
    result = call(aws, payload([error_line(2)]), 1401)
    assert result == {"sent": True, "lines": 1, "held_back": 3}


def test_control_messages_send_nothing(aws: dict[str, Any]) -> None:
    assert call(aws, payload([], "CONTROL_MESSAGE"), 1000) == {"sent": False, "lines": 0}
    assert mails(aws) == []


def test_the_lambda_entry_point_reads_its_configuration(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOPIC_ARN", aws["topic"])
    monkeypatch.setenv("STATE_TABLE", "sbcntr-stg-error-notifier")
    monkeypatch.setenv("ENV_NAME", "stg")
    assert handler.lambda_handler(payload([error_line(1)]), None)["sent"]
    assert mails(aws)[0]["Subject"].startswith("[sbcntr stg]")
