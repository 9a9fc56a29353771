"""The test-traffic hook: ECS invokes it at ``POST_TEST_TRAFFIC_SHIFT``.

By then the new (green) tasks are registered in the alternate target group and
the test listener rule forwards to them, while production traffic still goes
to the current (blue) tasks. The hook runs the smoke checks (``checks.py``, the
same list as ``sbcntrctl release smoke``) against the service's test listener
and answers ECS ("Lambda hooks for Amazon ECS service deployments",
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/lambda-lifecycle-hooks.html):

- ``{"hookStatus": "SUCCEEDED"}``: every check passed; ECS shifts production traffic.
- ``{"hookStatus": "IN_PROGRESS", "callBackDelay": s, "hookDetails": {...}}``: a
  check failed, attempts remain; ECS invokes the hook again after ``s`` seconds with
  the returned ``hookDetails`` (which carry the attempt number). A listener rule
  change reaches every ALB node only after a moment ("Edit a listener rule for your
  Application Load Balancer"), so one failed round right after the shift is no verdict.
- ``{"hookStatus": "FAILED"}``: a check still failed on the last attempt, or the
  invocation names no service this hook knows; ECS rolls the deployment back.

The event (the documented lifecycle payload) carries ``serviceArn``,
``targetServiceRevisionArn``, ``testTrafficWeights``, ``productionTrafficWeights``
and the ``hookDetails`` of the service definition's hook: ``{"service": "frontend"}``
or ``{"service": "backend"}`` names which checks and which test listener.

Environment: ``FRONTEND_TEST_URL``, ``BACKEND_TEST_URL`` (each test listener's
``http://<ALB DNS name>:<port>``); ``FRONTEND_ALB_FULL_NAME`` (``app/<name>/<id>``)
when that ALB is internet-facing: its DNS name resolves to public addresses, which
the hook (in the app subnets, with no public address and maybe no NAT) must not
use; it asks EC2 for the ALB's network interfaces and connects to their private
addresses instead, with the ALB's name as Host (the README says why).
``MAX_ATTEMPTS`` (3), ``RETRY_DELAY_SECONDS`` (20), ``CHECK_TIMEOUT_SECONDS`` (5).
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from typing import Any

from deploy_hook import checks

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

SUCCEEDED, FAILED, IN_PROGRESS = "SUCCEEDED", "FAILED", "IN_PROGRESS"


class ConfigError(ValueError):
    """The invocation or the environment does not say what to check."""


def _setting(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def private_addresses(alb_full_name: str, ec2: Any = None) -> list[str]:
    """The private IPv4 addresses of an ALB's network interfaces, sorted.

    EC2 describes each ALB node's interface with ``ELB app/<name>/<id>``
    (DescribeNetworkInterfaces, filter ``description``); the addresses change
    when the ALB scales, so they are looked up on every invocation.
    """
    if ec2 is None:
        import boto3  # noqa: PLC0415 - the Lambda runtime has it; only this path needs it

        ec2 = boto3.client("ec2")
    pages = ec2.get_paginator("describe_network_interfaces").paginate(
        Filters=[{"Name": "description", "Values": [f"ELB {alb_full_name}"]}]
    )
    found = {
        interface["PrivateIpAddress"]
        for page in pages
        for interface in page["NetworkInterfaces"]
        if interface.get("PrivateIpAddress")
    }
    if not found:
        msg = f"no network interface of {alb_full_name}"
        raise ConfigError(msg)
    return sorted(found)


def target(service: str, ec2: Any = None) -> tuple[str, dict[str, str]]:
    """Where ``service``'s test listener answers: base URL and extra headers."""
    test_url = os.environ.get(f"{service.upper()}_TEST_URL", "")
    if not test_url:
        msg = f"{service.upper()}_TEST_URL is not set"
        raise ConfigError(msg)
    alb = os.environ.get(f"{service.upper()}_ALB_FULL_NAME", "")
    if not alb:
        return test_url, {}
    url = urllib.parse.urlsplit(test_url)
    address = private_addresses(alb, ec2)[0]
    netloc = f"{address}:{url.port}" if url.port else address
    return urllib.parse.urlunsplit(url._replace(netloc=netloc)), {"Host": url.netloc}


def lambda_handler(
    event: dict[str, Any], context: object = None, ec2: Any = None
) -> dict[str, Any]:
    """Run the service's checks against its test listener; answer with a ``hookStatus``."""
    details = event.get("hookDetails") or {}
    service = str(details.get("service", ""))
    try:
        attempt = int(details.get("attempt", 1))
    except (TypeError, ValueError):  # not ours: count from the start
        attempt = 1
    revision = event.get("targetServiceRevisionArn", "?")
    if service not in checks.CHECKS:
        log.error("hook without a known service (hookDetails %r): FAILED", details)
        return {"hookStatus": FAILED}
    try:
        base_url, headers = target(service, ec2)
    except ConfigError as exc:
        log.error("%s: %s: FAILED", service, exc)
        return {"hookStatus": FAILED}
    timeout = _setting("CHECK_TIMEOUT_SECONDS", 5)
    results = checks.run(base_url, checks.CHECKS[service], timeout=timeout, headers=headers)
    for result in results:
        log.info("%s %s via %s: %s", service, revision, base_url, result.line())
    failed = checks.failures(results)
    if not failed:
        log.info("%s: %d checks passed on the test listener: SUCCEEDED", service, len(results))
        return {"hookStatus": SUCCEEDED}
    summary = "; ".join(r.line() for r in failed)
    if attempt < _setting("MAX_ATTEMPTS", 3):
        delay = _setting("RETRY_DELAY_SECONDS", 20)
        log.warning("%s attempt %d: %s: again in %d s", service, attempt, summary, delay)
        return {
            "hookStatus": IN_PROGRESS,
            "callBackDelay": delay,
            "hookDetails": {**details, "attempt": attempt + 1},
        }
    log.error("%s attempt %d (the last): %s: FAILED", service, attempt, summary)
    return {"hookStatus": FAILED}
