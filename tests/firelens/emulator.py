"""The compose AWS emulator (compose/aws_emulator.py) run on loopback for the router tests.

The same script docker compose runs: one moto state on a plain HTTP port (for
reading back) and an HTTPS port (for Fluent Bit, whose ``cloudwatch_logs``
output speaks only TLS). Buckets and log groups are made by
compose/aws_setup.py, as under compose.
"""

from __future__ import annotations

import gzip
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3

from tests.support import ROOT, base_env

REGION = "ap-northeast-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


class Emulator:
    def __init__(self, workdir: Path, tls_port: int = 0) -> None:
        """Start the emulator; ``tls_port`` 0 takes a free port."""
        self.log_path = workdir / "aws-emulator.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "compose/aws_emulator.py")],
                env=base_env(MOTO_HOST="127.0.0.1", MOTO_PORT="0", MOTO_TLS_PORT=str(tls_port)),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while not (found := re.search(r":(\d+) and https://[^:]+:(\d+)", self.log())):
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, f"emulator did not start: {self.log()}"
            time.sleep(0.05)
        self.port, self.tls_port = int(found.group(1)), int(found.group(2))
        self.url = f"http://127.0.0.1:{self.port}"
        options = {"endpoint_url": self.url, "region_name": REGION}
        keys = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
        self.s3 = boto3.client("s3", **options, **keys)
        self.logs = boto3.client("logs", **options, **keys)

    def log(self) -> str:
        return self.log_path.read_text()

    def setup(self, bucket: str, groups: list[str]) -> None:
        """compose/aws_setup.py: the bucket and the log groups, idempotently."""
        result = subprocess.run(
            [sys.executable, str(ROOT / "compose/aws_setup.py")],
            env=base_env(
                AWS_ENDPOINT_URL=self.url,
                AWS_REGION=REGION,
                LOG_BUCKET=bucket,
                LOG_GROUPS=",".join(groups),
                **CREDENTIALS,
            ),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def s3_objects(self, bucket: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
        """Each object under ``prefix``: its key and its records (gzip, one JSON per line)."""
        found: dict[str, list[dict[str, Any]]] = {}
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                body = self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                lines = gzip.decompress(body).decode().splitlines()
                found[item["Key"]] = [json.loads(line) for line in lines]
        return found

    def log_events(self, group: str) -> dict[str, list[dict[str, Any]]]:
        """Each stream of ``group``: its events (``timestamp``, ``message``)."""
        found: dict[str, list[dict[str, Any]]] = {}
        streams = self.logs.describe_log_streams(logGroupName=group)["logStreams"]
        for stream in streams:
            name = stream["logStreamName"]
            events = self.logs.get_log_events(
                logGroupName=group, logStreamName=name, startFromHead=True
            )["events"]
            found[name] = events
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
