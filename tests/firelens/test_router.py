"""The real Fluent Bit running the router configuration, against the AWS emulator.

Real log lines of the real services go in over the forward protocol, as
FireLens (ECS) and Docker's fluentd log driver (compose) deliver them; S3 and
CloudWatch Logs are the compose emulator (moto) on loopback, over TLS as in
production. What arrives is read back and compared with what was sent and
with the routing promised in firelens/README.md.

Skipped, with the reason, where no Fluent Bit executable is found (see
tests/firelens/router.py for where it is looked up).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.firelens import router
from tests.firelens.conftest import Line
from tests.firelens.emulator import Emulator
from tests.firelens.forward import ForwardClient, container_records
from tests.support import free_port

pytestmark = pytest.mark.skipif(
    router.binary() is None,
    reason="no Fluent Bit: set FLUENT_BIT, put fluent-bit on PATH, or lay out "
    "../shared/tools/fluent-bit-4.2.2/bin/fluent-bit beside the repository",
)

BUCKET = "sbcntr-logs-local"
# Fields Docker's log driver and FireLens add next to the app's own; "date"
# is the S3 output's record time.
DRIVER_FIELDS = {"container_id", "container_name", "source"}
SERVICES = ("frontend", "backend")
# Seconds the tests wait for a delivery the router makes on its own.
DELIVERY_TIMEOUT = 30


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    aws = Emulator(tmp_path_factory.mktemp("aws"))
    yield aws
    aws.stop()


def base_env() -> dict[str, str]:
    """The router's environment under compose, on top of the image's defaults."""
    return {"PATH": "/usr/bin:/bin", **router.image_defaults(), **router.compose_env()}


def ecs_env(aws: Emulator, run: str, **overrides: str) -> dict[str, str]:
    """Production-shaped names for one run (its own S3 prefix and log groups), via TLS."""
    env = {
        **base_env(),
        "LOG_S3_PREFIX": f"sbcntr/{run}",
        "LOG_GROUP_PREFIX": f"/sbcntr/{run}",
        "LOG_GROUP_NAME": f"/sbcntr/{run}/unparsed",
        "METRICS_LOG_GROUP": f"/sbcntr/{run}/metrics",
        "S3_ENDPOINT": f"https://127.0.0.1:{aws.tls_port}",
        "CLOUDWATCH_ENDPOINT": "https://127.0.0.1",
        "CLOUDWATCH_PORT": str(aws.tls_port),
        # S3 checks for due uploads every 6 s at the shortest.
        "S3_UPLOAD_TIMEOUT": "2s",
        **overrides,
    }
    aws.setup(BUCKET, [f"/sbcntr/{run}/{group}" for group in (*SERVICES, "unparsed", "metrics")])
    return env


def send(target: router.Router, lines: list[Line], tag: Callable[[str], str]) -> None:
    with ForwardClient(target.forward_port) as client:
        for line in lines:
            for record in container_records(line.container, line.raw):
                client.send(tag(line.container), [record])


def app_fields(record: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
    """A delivered record without what the driver, FireLens and S3 added (checked present)."""
    assert record.keys() >= DRIVER_FIELDS, record
    for key, value in metadata.items():
        assert record[key] == value, (key, record)
    added = DRIVER_FIELDS | metadata.keys() | {"date"}
    return {k: v for k, v in record.items() if k not in added}


def sent_fields(line: Line) -> dict[str, Any]:
    """What a line should arrive as: its JSON fields, or the line itself under "log"."""
    return line.record if line.record is not None else {"log": line.raw}


def key_of(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True)


def epoch_ms(timestamp: str) -> int:
    parsed = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1000)


def wait_until(check: Callable[[], bool], timeout: float = DELIVERY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not delivered in time"
        time.sleep(0.5)


def assert_routed(
    aws: Emulator,
    lines: list[Line],
    env: dict[str, str],
    stream: Callable[[str], str],
    metadata: dict[str, str],
) -> None:
    """Every shipped line once in S3 under its service; the routed ones once in CloudWatch."""
    prefix = env["LOG_S3_PREFIX"]
    objects = aws.s3_objects(BUCKET, f"{prefix}/")
    key_format = re.compile(
        rf"^{re.escape(prefix)}/(frontend|backend)/\d{{4}}/\d\d/\d\d/\d\d/\d{{4}}-\w+\.gz$"
    )
    in_s3: Counter[str] = Counter()
    for key, records in objects.items():
        found = key_format.match(key)
        assert found, key
        for record in records:
            assert record["container_name"] == f"/{found.group(1)}", (key, record)
            fields = app_fields(record, metadata)
            if "timestamp" in fields:
                # The record's time is the line's own timestamp, not the arrival time.
                assert epoch_ms(record["date"]) == epoch_ms(fields["timestamp"]), record
            in_s3[key_of(fields)] += 1
    assert in_s3 == Counter(key_of(sent_fields(line)) for line in lines if line.shipped)

    routed = [line for line in lines if line.to_cloudwatch(env["CLOUDWATCH_LEVELS"])]
    for group in (*SERVICES, None):
        name = env["LOG_GROUP_NAME"] if group is None else f"{env['LOG_GROUP_PREFIX']}/{group}"
        wanted = [
            line
            for line in routed
            if (line.record or {}).get("service") == group
            or (group is None and line.record is None)
        ]
        streams = aws.log_events(name)
        expected_streams = {stream(line.container) for line in wanted}
        assert set(streams) == expected_streams, name
        in_group: Counter[str] = Counter()
        for stream_name, events in streams.items():
            for event in events:
                record = json.loads(event["message"])
                fields = app_fields(record, metadata)
                assert stream_name == stream(record["container_name"].lstrip("/"))
                if "timestamp" in fields:
                    assert event["timestamp"] == epoch_ms(fields["timestamp"]), event
                in_group[key_of(fields)] += 1
        assert in_group == Counter(key_of(sent_fields(line)) for line in wanted), name

    # Metrics lines: once each in the metrics group, sent as EMF, and nowhere else.
    metrics = [line for line in lines if line.is_metrics]
    in_metrics: Counter[str] = Counter()
    for stream_name, events in aws.log_events(env["METRICS_LOG_GROUP"]).items():
        for event in events:
            record = json.loads(event["message"])
            assert stream_name == stream(record["container_name"].lstrip("/"))
            assert "_aws" in record
            in_metrics[key_of(app_fields(record, metadata))] += 1
    assert in_metrics == Counter(key_of(sent_fields(line)) for line in metrics)


def delivered(aws: Emulator, lines: list[Line], env: dict[str, str]) -> Callable[[], bool]:
    """True once S3 holds as many records as lines were shipped (more fails later)."""
    shipped = sum(line.shipped for line in lines)

    def check() -> bool:
        objects = aws.s3_objects(BUCKET, f"{env['LOG_S3_PREFIX']}/")
        return sum(len(records) for records in objects.values()) >= shipped

    return check


# --- the configuration as Fluent Bit reads it


def task_definition_env(service: str) -> dict[str, str]:
    """The router's environment on ECS: the image's defaults, then the rendered task definition."""
    from sbcntrctl.deploy import ecs  # noqa: PLC0415 - operator tooling, only for this check
    from tests.tools.test_deploy import ENV, TASKDEFS  # noqa: PLC0415

    td = ecs.render(service, ENV, TASKDEFS).task_definition
    (log_router,) = [c for c in td["containerDefinitions"] if "firelensConfiguration" in c]
    task_env = {v["name"]: v["value"] for v in log_router["environment"]}
    return {"PATH": "/usr/bin:/bin", **router.image_defaults(), **task_env}


@pytest.mark.parametrize("path", ["ecs", "compose"])
def test_fluent_bit_accepts_the_configuration(path: str, tmp_path: Path) -> None:
    """``--dry-run``: ECS with each task definition's environment, compose with compose's."""
    conf, _ = router.copy_configuration(tmp_path)
    if path == "ecs":
        main = router.ecs_main_file(conf, free_port())
        envs = [task_definition_env(service) for service in SERVICES]
    else:
        main, envs = router.compose_main_file(conf, free_port()), [base_env()]
    for env in envs:
        result = router.dry_run(main, env)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "configuration test is successful" in output
        # Every ${VAR} is set: an unset one would only be a warning.
        assert "is used but not set" not in output


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("LOG_BUCKET", "'bucket' is a required parameter"),
        ("AWS_REGION", "'region' is a required field"),
        ("LOG_GROUP_NAME", "'log_group_name' is a required field"),
        ("METRICS_LOG_GROUP", "'log_group_name' is a required field"),
        ("LOG_STREAM_PREFIX", "'log_stream_name' or 'log_stream_prefix' is required"),
        ("CLOUDWATCH_LEVELS", "property 'rule' expects 4 values"),
    ],
)
def test_the_router_refuses_to_start_without(variable: str, message: str, tmp_path: Path) -> None:
    """An unset ${VAR} becomes empty; for these the router then exits instead of running."""
    conf, _ = router.copy_configuration(tmp_path)
    main = router.ecs_main_file(conf, free_port())
    env = {k: v for k, v in base_env().items() if k != variable}
    fluent_bit = router.binary()
    assert fluent_bit is not None
    result = subprocess.run(
        [fluent_bit, "-c", str(main)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert f"variable ${{{variable}}} is used but not set" in result.stdout + result.stderr
    assert message in result.stdout + result.stderr


# --- real runs


@pytest.mark.quick
def test_ecs_path_delivers_each_line_where_the_readme_says(
    emulator: Emulator, app_lines: list[Line], tmp_path: Path
) -> None:
    env = ecs_env(emulator, "ecs")
    running = router.start(tmp_path, env, path="ecs")
    send(running, app_lines, router.firelens_tag)
    # Another container of the task: the routing must not catch it.
    other = next(line for line in app_lines if line.kind == "status 5xx")
    send(running, [Line("xray-daemon", other.raw)], router.firelens_tag)
    # S3 uploads on its timer while the router runs; then a clean stop adds nothing.
    wait_until(delivered(emulator, app_lines, env))
    assert running.stop(timeout=40) == 0, running.log()
    assert_routed(
        emulator,
        app_lines,
        env,
        router.firelens_stream,
        router.ECS_METADATA,
    )


@pytest.mark.slow
def test_compose_path_delivers_to_both_emulated_destinations(
    emulator: Emulator, app_lines: list[Line], tmp_path: Path
) -> None:
    """local.conf with docker-compose.yml's router environment, "aws" being loopback."""
    env = base_env()
    for name, value in env.items():
        env[name] = value.replace("https://aws", "https://127.0.0.1").replace(
            ":4443", f":{emulator.tls_port}"
        )
    emulator_env = router.compose_env("aws")
    assert env["CLOUDWATCH_PORT"] == emulator_env["MOTO_TLS_PORT"] == "4443"
    assert base_env()["S3_ENDPOINT"] == "https://aws:4443"
    env["CLOUDWATCH_PORT"] = str(emulator.tls_port)
    env["S3_UPLOAD_TIMEOUT"] = "2s"
    groups = (
        "/sbcntr/local/frontend,/sbcntr/local/backend,/sbcntr/local/unparsed,/sbcntr/local/metrics"
    )
    assert router.compose_env("aws-setup")["LOG_GROUPS"] == groups
    emulator.setup(router.compose_env("aws-setup")["LOG_BUCKET"], groups.split(","))
    running = router.start(tmp_path, env, path="compose")
    send(running, app_lines, lambda container: f"{container}-firelens-local")
    wait_until(delivered(emulator, app_lines, env))
    assert running.stop(timeout=40) == 0, running.log()
    assert_routed(emulator, app_lines, env, lambda c: f"task-{c}-firelens-local", {})


@pytest.mark.slow
@pytest.mark.parametrize("levels", ["^(critical)$", "."])
def test_cloudwatch_levels_and_5xx_whatever_its_level(
    levels: str, emulator: Emulator, app_lines: list[Line], tmp_path: Path
) -> None:
    """CLOUDWATCH_LEVELS picks the levels copied ("." is every level); 5xx access
    lines are copied whatever their level (the status rule)."""
    run = "critical" if levels.startswith("^") else "all"
    env = ecs_env(emulator, run, CLOUDWATCH_LEVELS=levels)
    five = [line for line in app_lines if line.kind == "status 5xx"]
    others = [line for line in app_lines if line.kind in ("status 2xx", "status 4xx", "warning")]
    assert five
    assert others
    relevelled = []
    for line in five:
        record = {**(line.record or {}), "level": "info", "request_id": f"info-{len(relevelled)}"}
        relevelled.append(Line(line.container, json.dumps(record)))
    lines = five + relevelled + others
    running = router.start(tmp_path, env)
    send(running, lines, router.firelens_tag)
    wait_until(delivered(emulator, lines, env))
    assert running.stop(timeout=40) == 0, running.log()
    assert_routed(
        emulator,
        lines,
        env,
        router.firelens_stream,
        router.ECS_METADATA,
    )
    copies = [
        json.loads(event["message"])
        for service in SERVICES
        for stream in emulator.log_events(f"/sbcntr/{run}/{service}").values()
        for event in stream
    ]
    copied_5xx = sorted(c["status"] for c in copies if c.get("status", 0) >= 500)
    assert copied_5xx == sorted(2 * [(line.record or {})["status"] for line in five])
    if levels == ".":
        assert len(copies) == len(lines)


@pytest.mark.slow
@pytest.mark.serial  # a time bound
def test_sigterm_mid_stream_loses_no_accepted_record_in_s3(
    emulator: Emulator, app_lines: list[Line], tmp_path: Path
) -> None:
    """Records keep arriving when SIGTERM comes; every accepted one reaches S3 within Grace.

    The S3 upload timeout is far away, so everything is still buffered at
    SIGTERM: the router uploads it while it shuts down. CloudWatch Logs copies
    of the records accepted in the last moments before SIGTERM are lost
    (Fluent Bit drops what its rewrite_tag emitter still queues when it stops,
    fluent/fluent-bit#12026); the test measures how many and checks that only
    the most recent go missing.
    """
    grace = 10
    env = ecs_env(emulator, "sigterm", S3_UPLOAD_TIMEOUT="10m", ROUTER_GRACE_SECONDS=str(grace))
    info = next(line for line in app_lines if line.kind == "status 2xx").record
    warning = next(line for line in app_lines if line.kind == "status 4xx").record
    assert info
    assert warning
    running = router.start(tmp_path, env)
    tag = router.firelens_tag("frontend")
    accepted: list[str] = []
    sent_batches = threading.Event()

    def produce() -> None:
        batch = 0
        try:
            with ForwardClient(running.forward_port, timeout=5) as client:
                while True:
                    ids = [f"sigterm-{batch}-{n}" for n in range(20)]
                    records = [
                        {**(warning if n % 10 == 0 else info), "request_id": rid}
                        for n, rid in enumerate(ids)
                    ]
                    lines = [container_records("frontend", json.dumps(r))[0] for r in records]
                    client.send(tag, lines)
                    accepted.extend(ids)
                    batch += 1
                    if batch == 20:
                        sent_batches.set()
        except OSError:
            return  # the router stopped taking records

    producer = threading.Thread(target=produce)
    producer.start()
    assert sent_batches.wait(DELIVERY_TIMEOUT)
    stopped_at = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=grace + 10) == 0, running.log()
    took = time.monotonic() - stopped_at
    producer.join(timeout=10)
    assert not producer.is_alive()
    assert took < grace, f"shutdown took {took:.1f} s, Grace is {grace} s"

    objects = emulator.s3_objects(BUCKET, "sbcntr/sigterm/")
    in_s3 = Counter(r["request_id"] for records in objects.values() for r in records)
    assert len(accepted) >= 400
    missing = [rid for rid in accepted if in_s3[rid] != 1]
    assert not missing, f"{len(missing)} accepted records not exactly once in S3: {missing[:5]}"
    assert max(in_s3.values()) == 1

    events = emulator.log_events("/sbcntr/sigterm/frontend")
    copied = Counter(json.loads(e["message"])["request_id"] for es in events.values() for e in es)
    warned = [rid for rid in accepted if rid.endswith(("-0", "-10"))]
    assert set(copied) <= set(warned)
    # None twice; on a busy machine all of them can be among the lost ones.
    assert all(count == 1 for count in copied.values())
    delivered_copies = [rid in copied for rid in warned]
    # Copies go missing only at the end: delivered ones first, then lost ones.
    assert delivered_copies == sorted(delivered_copies, reverse=True)
    print(
        f"SIGTERM after {len(accepted)} accepted records: exit in {took:.2f} s, "
        f"{sum(in_s3.values())} in S3; {len(copied)} of {len(warned)} warning copies "
        "in CloudWatch Logs"
    )


@pytest.mark.slow
def test_sigterm_after_the_app_stopped_delivers_everything(
    emulator: Emulator, app_lines: list[Line], tmp_path: Path
) -> None:
    """As on ECS: the app container stops first, then the router gets SIGTERM.

    Nothing has been uploaded to S3 yet (the upload timeout is far away); the
    router uploads it all on the way out, and every CloudWatch Logs copy made.
    """
    env = ecs_env(emulator, "stop", S3_UPLOAD_TIMEOUT="10m")
    running = router.start(tmp_path, env)
    send(running, app_lines, router.firelens_tag)
    time.sleep(2 * float(env["ROUTER_FLUSH_SECONDS"]) + 0.5)
    assert emulator.s3_objects(BUCKET, "sbcntr/stop/") == {}
    assert running.stop(timeout=40) == 0, running.log()
    assert_routed(
        emulator,
        app_lines,
        env,
        router.firelens_stream,
        router.ECS_METADATA,
    )


@pytest.mark.slow
def test_an_endpoint_down_longer_than_the_retries(app_lines: list[Line], tmp_path: Path) -> None:
    """Both endpoints unreachable (a closed port): what is dropped, what stays on disk.

    CloudWatch Logs copies are retried Retry_Limit times, then dropped. S3
    records are kept in store_dir; the upload is retried Retry_Limit times,
    then no more, and the file is deleted when the router stops: the records
    are lost unless the endpoint comes back before the retries run out.
    """
    closed = free_port()
    env = {
        **base_env(),
        "S3_ENDPOINT": f"https://127.0.0.1:{closed}",
        "CLOUDWATCH_ENDPOINT": "127.0.0.1",
        "CLOUDWATCH_PORT": str(closed),
        "S3_UPLOAD_TIMEOUT": "2s",
        "ROUTER_RETRY_LIMIT": "1",
        "ROUTER_RETRY_BASE_SECONDS": "1",
        "ROUTER_RETRY_CAP_SECONDS": "1",
    }
    lines = [line for line in app_lines if line.kind in ("status 2xx", "status 4xx")]
    running = router.start(tmp_path, env)
    send(running, lines, router.firelens_tag)

    running.wait_for_log(r"chunk '[^']+' cannot be retried: .*output=cloudwatch_logs", 20)
    running.wait_for_log(r"failed to send 1/1 times, will not retry", 20)
    metrics = running.metrics()["output"]
    cloudwatch = next(v for k, v in metrics.items() if k.startswith("cloudwatch_logs"))
    assert cloudwatch["retries_failed"] >= 1
    assert cloudwatch["dropped_records"] == sum(line.to_cloudwatch() for line in lines)
    stored = [p for p in (running.state / "s3").rglob("*") if p.is_file()]
    kept = "".join(p.read_text(errors="replace") for p in stored)
    for line in lines:
        assert (line.record or {})["request_id"] in kept, "S3 records are kept on disk"

    assert running.stop(timeout=40) == 0, running.log()
    left = [p for p in (running.state / "s3").rglob("*") if p.is_file()]
    assert left == [], "the router deletes the failed S3 buffer when it stops"


@pytest.mark.slow
def test_an_endpoint_back_within_the_retries_gets_everything(
    app_lines: list[Line], tmp_path: Path
) -> None:
    """Both endpoints down when the first records are sent, up before the retries run out."""
    port = free_port()
    env = {
        **base_env(),
        "LOG_S3_PREFIX": "sbcntr/back",
        "LOG_GROUP_PREFIX": "/sbcntr/back",
        "LOG_GROUP_NAME": "/sbcntr/back/unparsed",
        "METRICS_LOG_GROUP": "/sbcntr/back/metrics",
        "S3_ENDPOINT": f"https://127.0.0.1:{port}",
        "CLOUDWATCH_ENDPOINT": "127.0.0.1",
        "CLOUDWATCH_PORT": str(port),
        "S3_UPLOAD_TIMEOUT": "2s",
        "ROUTER_RETRY_BASE_SECONDS": "1",
        "ROUTER_RETRY_CAP_SECONDS": "2",
    }
    lines = [line for line in app_lines if line.kind in ("status 2xx", "status 4xx", "warning")]
    running = router.start(tmp_path / "router", env)
    send(running, lines, router.firelens_tag)
    running.wait_for_log(r"\[output:cloudwatch_logs[^]]*\] Failed to send events", 20)
    running.wait_for_log(r"\[output:s3[^]]*\] PutObject request failed", 20)

    (tmp_path / "aws").mkdir()
    aws = Emulator(tmp_path / "aws", tls_port=port)
    try:
        groups = [f"/sbcntr/back/{group}" for group in (*SERVICES, "unparsed", "metrics")]
        aws.setup(BUCKET, groups)
        wait_until(delivered(aws, lines, env))
        copies = sum(line.to_cloudwatch(env["CLOUDWATCH_LEVELS"]) for line in lines)
        wait_until(
            lambda: (
                sum(len(events) for g in groups for events in aws.log_events(g).values()) >= copies
            )
        )
        assert running.stop(timeout=40) == 0, running.log()
        assert_routed(
            aws,
            lines,
            env,
            router.firelens_stream,
            router.ECS_METADATA,
        )
    finally:
        aws.stop()
