"""Where a run on ECS leaves its reports: S3, under a prefix only its master may write.

The master task (``locust -f loadtest/ --master --upload-s3 s3://BUCKET/loadtest/``)
uploads ``summary.json``, ``steps.csv``, ``cpu.csv`` and Locust's HTML report
when the run ends, to ``<prefix><user id>/<run id>/``. The user id is the
caller's ``aws:userid`` (STS GetCallerIdentity ``UserId``): for an ECS task
role it is ``<role id>:<task id>`` (the task's role session is named after
the task), so the task role's policy
(``taskdefs/loadtest/iam/task-role-policy-master.json``) grants
``s3:PutObject`` on ``loadtest/${aws:userid}/*`` only: each master task may
write its own run's prefix and nothing else (IAM User Guide, "IAM policy
elements: Variables and tags"; Amazon ECS Developer Guide, "Amazon ECS task
IAM role"). ``sbcntrctl loadtest ecs run`` finds the prefix by the master's
task id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

REPORT_FILES = ("summary.json", "steps.csv", "cpu.csv")


def parse(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix/`` as (bucket, prefix ending in ``/`` or empty); ValueError if not."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        msg = f"--upload-s3 {url!r}: give s3://BUCKET/PREFIX/"
        raise ValueError(msg)
    prefix = parsed.path.lstrip("/")
    return parsed.netloc, prefix if not prefix or prefix.endswith("/") else prefix + "/"


def run_prefix(prefix: str, user_id: str, run_id: str) -> str:
    return f"{prefix}{user_id}/{run_id}/"


def upload(url: str, run_id: str, folder: Path, html: Path | None, clients: Any) -> list[str]:
    """Upload the run's reports; the S3 URLs written. ``clients(name)`` makes a boto3 client."""
    bucket, prefix = parse(url)
    user_id = clients("sts").get_caller_identity()["UserId"]
    where = run_prefix(prefix, user_id, run_id)
    files = [folder / name for name in REPORT_FILES if (folder / name).exists()]
    if html is not None and html.exists():
        files.append(html)
    s3 = clients("s3")
    written = []
    for path in files:
        key = where + ("locust.html" if path == html else path.name)
        s3.upload_file(str(path), bucket, key)
        written.append(f"s3://{bucket}/{key}")
    return written
