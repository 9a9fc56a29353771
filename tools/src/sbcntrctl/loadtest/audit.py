"""The STEP3 audit: after a run, are the logs and traces complete and right?

Reads the run's ``summary.json`` (written by ``locust -f loadtest/`` when the
run ends), the services' captured JSON logs and, where available, the
captured X-Ray segment documents, and counts every gap:

* requests Locust recorded without exactly one frontend access line (lost,
  doubled), and requests of the run the frontend logged that Locust did not
  record (a surplus: the figures are not the logs' run);
* backend calls a frontend request should have made without exactly one
  backend access line (lost, doubled, unexpected);
* error lines the run did not cause on purpose;
* access lines whose level does not match their status (docs/log-schema.md);
* sampled requests whose frontend -> backend trace is incomplete;
* lines that are not JSON;
* lines of the run id outside the run's time (the same id used by two runs).

It refuses (:class:`AuditInputError`) inputs that do not belong together: a
``summary.json`` of another run id, a log given twice, a per-service log
holding the other service's lines, logs without one of the services. A log
holding both services (``docker compose logs``) is split by the ``service``
field every line carries.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCESS_LOGGER = "servicekit.access"
HEALTH_PATHS = ("/healthz", "/readyz")
SERVICES = ("frontend", "backend")
# Difference allowed between the load generator's clock and the log timestamps.
CLOCK_SLACK_SECONDS = 5.0

# Frontend route -> the backend calls it makes when it succeeds ({1}: the id).
ROUTES: list[tuple[str, re.Pattern[str], list[tuple[str, str]]]] = [
    (m, re.compile(p), calls)
    for m, p, calls in [
        ("GET", r"^/$", [("GET", "/v1/helloworld"), ("GET", "/v1/notifications/count")]),
        ("GET", r"^/items$", [("GET", "/v1/items"), ("GET", "/v1/notifications/count")]),
        ("POST", r"^/items$", [("POST", "/v1/items")]),
        ("POST", r"^/items/(\d+)/favorite$", [("PUT", "/v1/items/{1}/favorite")]),
        (
            "GET",
            r"^/notifications$",
            [("GET", "/v1/notifications"), ("GET", "/v1/notifications/count")],
        ),
        ("POST", r"^/notifications/read$", [("PUT", "/v1/notifications/read")]),
        ("POST", r"^/notifications/(\d+)/read$", [("PUT", "/v1/notifications/{1}/read")]),
        ("GET", r"^/api/helloworld$", [("GET", "/v1/helloworld")]),
        ("GET", r"^/api/items$", [("GET", "/v1/items")]),
        ("POST", r"^/api/items$", [("POST", "/v1/items")]),
        ("PUT", r"^/api/items/(\d+)/favorite$", [("PUT", "/v1/items/{1}/favorite")]),
        ("GET", r"^/api/notifications$", [("GET", "/v1/notifications")]),
        ("POST", r"^/api/notifications$", [("POST", "/v1/notifications")]),
        ("GET", r"^/api/notifications/count$", [("GET", "/v1/notifications/count")]),
        ("PUT", r"^/api/notifications/read$", [("PUT", "/v1/notifications/read")]),
        ("PUT", r"^/api/notifications/(\d+)/read$", [("PUT", "/v1/notifications/{1}/read")]),
    ]
]


class AuditInputError(ValueError):
    """The inputs do not belong together (another run's figures, a log given twice...)."""


@dataclass
class Report:
    sent: int = 0
    frontend_lines: int = 0
    traces_checked: bool = False
    gaps: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def gap(self, name: str, count: int, example: str = "") -> None:
        if count:
            self.gaps[name] = self.gaps.get(name, 0) + count
            if example and len(self.notes) < 20:
                self.notes.append(f"{name}: {example}")

    @property
    def ok(self) -> bool:
        return not self.gaps


@dataclass(frozen=True)
class RunSummary:
    """What ``locust -f loadtest/`` wrote in ``summary.json`` when the run ended."""

    run_id: str
    started_at: dt.datetime
    ended_at: dt.datetime
    requests: int


def read_summary(path: Path, run_id: str) -> RunSummary:
    """The run's summary; refused unless it is the ``summary.json`` of ``run_id``."""
    try:
        data = json.loads(path.read_text())
        summary = RunSummary(
            run_id=str(data["run_id"]),
            started_at=_aware(dt.datetime.fromisoformat(data["started_at"])),
            ended_at=_aware(dt.datetime.fromisoformat(data["ended_at"])),
            requests=int(data["requests"]),
        )
    except OSError as exc:
        msg = f"{path}: cannot read it ({exc.strerror})"
        raise AuditInputError(msg) from None
    except (ValueError, KeyError, TypeError):
        msg = (
            f"{path}: not a summary.json written by locust -f loadtest/ "
            "(run_id, started_at, ended_at, requests)"
        )
        raise AuditInputError(msg) from None
    if summary.run_id != run_id:
        msg = f"{path} is the summary of run {summary.run_id!r}, not of --run-id {run_id!r}"
        raise AuditInputError(msg)
    return summary


@dataclass(frozen=True)
class Line:
    raw: str
    record: dict[str, Any]


def read_logs(
    frontend_log: Path | None, backend_log: Path | None, combined: list[Path], report: Report
) -> dict[str, list[Line]]:
    """Each service's lines. A per-service log must hold only that service's lines; a
    combined log (``--log``) is split by the ``service`` field every line carries."""
    given: list[tuple[Path, str | None]] = [
        (p, s) for p, s in ((frontend_log, "frontend"), (backend_log, "backend")) if p
    ]
    given += [(p, None) for p in combined]
    seen: set[Path] = set()
    for path, _ in given:
        if path.resolve() in seen:
            msg = (
                f"{path} is given twice: a log that holds both services is given once, "
                "with --log, and split by its service field"
            )
            raise AuditInputError(msg)
        seen.add(path.resolve())
    lines: dict[str, list[Line]] = {service: [] for service in SERVICES}
    for path, expected in given:
        source = expected or "log"
        try:
            text = path.read_text()
        except OSError as exc:
            msg = f"{path}: cannot read it ({exc.strerror})"
            raise AuditInputError(msg) from None
        for number, raw in enumerate(text.splitlines(), 1):
            try:
                record = json.loads(raw)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                report.gap(f"{source}: lines that are not JSON", 1, f"{path}:{number}: {raw[:120]}")
                continue
            service = record.get("service")
            if expected and service != expected:
                msg = (
                    f"{path}:{number} is a {service!r} line in the --{expected}-log: a log "
                    "that holds both services is given once, with --log"
                )
                raise AuditInputError(msg)
            if service not in lines:
                report.gap(f"{source}: lines of no known service", 1, f"{path}:{number}")
                continue
            lines[service].append(Line(raw, record))
    for service in SERVICES:
        if not lines[service]:
            msg = f"no {service} line in the logs given: the audit needs both services' logs"
            raise AuditInputError(msg)
    return lines


def expected_calls(method: str, path: str) -> list[tuple[str, str]] | None:
    for route_method, pattern, calls in ROUTES:
        match = pattern.match(path)
        if route_method == method and match:
            return [(m, p.replace("{1}", match.group(1)) if "{1}" in p else p) for m, p in calls]
    return None


def expected_level(record: dict[str, Any]) -> str:
    if record.get("path") in HEALTH_PATHS:
        return "debug"
    if record.get("cancelled") or "exception" in record or record["status"] >= 500:
        return "error"
    return "warning" if record["status"] >= 400 else "info"


def _aware(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _timestamp(record: dict[str, Any]) -> dt.datetime | None:
    try:
        return _aware(dt.datetime.fromisoformat(str(record["timestamp"])))
    except (KeyError, ValueError):
        return None


def audit(
    run_id: str,
    summary_path: Path,
    *,
    frontend_log: Path | None = None,
    backend_log: Path | None = None,
    logs: list[Path] | None = None,
    segments: Path | None = None,
    allowed_errors: str | None = None,
) -> Report:
    """Audit run ``run_id``; raises :class:`AuditInputError` when the inputs do not match."""
    summary = read_summary(summary_path, run_id)
    report = Report(sent=summary.requests)
    lines = read_logs(frontend_log, backend_log, logs or [], report)
    own_id = re.compile(rf"^{re.escape(run_id)}-[0-9a-f]{{16}}$")
    earliest = summary.started_at - dt.timedelta(seconds=CLOCK_SLACK_SECONDS)
    latest = summary.ended_at + dt.timedelta(seconds=CLOCK_SLACK_SECONDS)

    def of_run(service: str) -> list[dict[str, Any]]:
        found = []
        for line in lines[service]:
            record = line.record
            if record.get("logger") != ACCESS_LOGGER or not own_id.match(
                str(record.get("request_id", ""))
            ):
                continue
            at = _timestamp(record)
            if at is None or not earliest <= at <= latest:
                report.gap(
                    f"{service}: lines of this run id outside the run's time",
                    1,
                    f"{record.get('timestamp')} {record.get('request_id')} (the run went from "
                    f"{summary.started_at:%H:%M:%S} to {summary.ended_at:%H:%M:%S} UTC: "
                    "was the run id used twice?)",
                )
                continue
            found.append(record)
        return found

    front_access, back_access = of_run("frontend"), of_run("backend")
    report.frontend_lines = len(front_access)
    per_request = Counter(r["request_id"] for r in front_access)
    report.gap("frontend: requests without an access line", max(0, report.sent - len(per_request)))
    if len(per_request) < report.sent / 2:
        report.notes.insert(0, _wrong_files_hint(run_id, lines["frontend"], len(per_request)))
    report.gap(
        "frontend: requests of the run Locust did not record",
        max(0, len(per_request) - report.sent),
    )
    doubled = {rid: n for rid, n in per_request.items() if n > 1}
    report.gap(
        "frontend: requests with more than one access line",
        sum(n - 1 for n in doubled.values()),
        next(iter(doubled), ""),
    )
    _check_backend_calls(front_access, back_access, report)
    allowed = re.compile(allowed_errors) if allowed_errors else None
    for service in SERVICES:
        for line in lines[service]:
            record = line.record
            if record.get("level") in ("error", "critical") and not (
                allowed and allowed.search(line.raw)
            ):
                report.gap(
                    f"{service}: error lines not caused on purpose",
                    1,
                    f"{record.get('event')} {record.get('path', '')} {record.get('status', '')}",
                )
            if record.get("logger") == ACCESS_LOGGER and record.get("level") != expected_level(
                record
            ):
                report.gap(
                    f"{service}: access lines at the wrong level",
                    1,
                    f"{record.get('status')} logged at {record.get('level')}",
                )
    if segments is not None:
        _check_traces(front_access, segments, report)
        report.traces_checked = True
    return report


def _check_backend_calls(
    front: list[dict[str, Any]], back: list[dict[str, Any]], report: Report
) -> None:
    made: dict[str, Counter[tuple[str, str]]] = {}
    for record in back:
        if record["status"] < 500:
            made.setdefault(record["request_id"], Counter())[
                (record["method"], record["path"])
            ] += 1
    for record in front:
        calls = expected_calls(record["method"], record["path"])
        if calls is None or record["status"] >= 500:
            continue
        want = Counter(calls)
        got = made.get(record["request_id"], Counter())
        example = f"{record['method']} {record['path']} ({record['request_id']})"
        report.gap("backend: calls without an access line", sum((want - got).values()), example)
        extra = got - want
        doubled = sum(min(n, extra[k]) for k, n in want.items() if k in extra)
        report.gap("backend: calls with more than one access line", doubled, example)
        report.gap("backend: unexpected calls", sum(extra.values()) - doubled, example)


def _read_segments(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as exc:
        msg = f"{path}: cannot read it ({exc.strerror})"
        raise AuditInputError(msg) from None
    documents = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except ValueError:
            document = None
        if not isinstance(document, dict) or "trace_id" not in document:
            msg = f"{path}:{number}: not a segment document (sbcntrctl xray-capture writes them)"
            raise AuditInputError(msg)
        documents.append(document)
    return documents


def _check_traces(front: list[dict[str, Any]], path: Path, report: Report) -> None:
    documents = _read_segments(path)
    frontend = {d["trace_id"]: d for d in documents if d.get("name") == "frontend"}
    backend_parents = {
        (d["trace_id"], d.get("parent_id")) for d in documents if d.get("name") == "backend"
    }
    sampled = [r for r in front if r.get("trace_id") in frontend]
    report.notes.append(f"traces: {len(sampled)} of {len(front)} requests sampled")
    if front and not sampled and any("trace_id" in r for r in front):
        report.gap("traces: no segment of this run's requests in the segments file", 1)
    for record in sampled:
        segment = frontend[record["trace_id"]]
        calls = [s for s in segment.get("subsegments", []) if s.get("namespace") == "remote"]
        missing = [c for c in calls if (record["trace_id"], c["id"]) not in backend_parents]
        report.gap("traces: backend segments missing", len(missing), record["trace_id"])
        expected = expected_calls(record["method"], record["path"])
        if expected is not None and record["status"] < 500 and len(calls) < len(expected):
            report.gap(
                "traces: backend calls without a subsegment",
                len(expected) - len(calls),
                record["trace_id"],
            )


def _wrong_files_hint(run_id: str, frontend: list[Line], logged: int) -> str:
    """When most requests have no access line: the files may be another run's."""
    runs = Counter(
        found.group(1)
        for line in frontend
        if line.record.get("logger") == ACCESS_LOGGER
        and (found := _RUN_OF_REQUEST.match(str(line.record.get("request_id", ""))))
    )
    runs.pop(run_id, None)
    held = ", ".join(f"{run} ({count})" for run, count in runs.most_common(3))
    return (
        f"only {logged} access lines of run {run_id} in the frontend's log: are these "
        "this run's log files?"
        + (f" They hold access lines of other runs: {held}." if held else "")
    )


_RUN_OF_REQUEST = re.compile(r"^(.+)-[0-9a-f]{16}$")


def render(report: Report) -> str:
    lines = [
        f"Locust sent {report.sent} requests; the frontend logged {report.frontend_lines} "
        f"access lines for this run.",
    ]
    if report.ok:
        if report.traces_checked:
            checked = "nothing lost, doubled, mislevelled or untraced"
        else:
            checked = "nothing lost, doubled or mislevelled; traces not checked: no --segments"
        lines.append(f"STEP3 audit: no gap ({checked}).")
    else:
        lines.append("STEP3 audit: GAPS")
        lines += [f"  {name}: {count}" for name, count in sorted(report.gaps.items())]
    lines += [f"  - {note}" for note in report.notes]
    return "\n".join(lines)
