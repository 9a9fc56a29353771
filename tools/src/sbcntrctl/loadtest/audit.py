"""The STEP3 audit: after a run, are the logs and traces complete and right?

Reads the run's Locust statistics, the services' captured JSON logs and,
where available, the captured X-Ray segment documents, and counts every gap:

* requests Locust sent without exactly one frontend access line (lost, doubled);
* backend calls a frontend request should have made without exactly one
  backend access line (lost, doubled, unexpected);
* error lines the run did not cause on purpose;
* access lines whose level does not match their status (docs/log-schema.md);
* sampled requests whose frontend -> backend trace is incomplete;
* lines that are not JSON.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCESS_LOGGER = "servicekit.access"
HEALTH_PATHS = ("/healthz", "/readyz")

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
        ("GET", r"^/api/notifications/count$", [("GET", "/v1/notifications/count")]),
        ("PUT", r"^/api/notifications/read$", [("PUT", "/v1/notifications/read")]),
        ("PUT", r"^/api/notifications/(\d+)/read$", [("PUT", "/v1/notifications/{1}/read")]),
    ]
]


@dataclass
class Report:
    sent: int = 0
    frontend_lines: int = 0
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


def read_log(path: Path, report: Report, service: str) -> list[dict[str, Any]]:
    records = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            report.gap(f"{service}: lines that are not JSON", 1, f"line {number}: {raw[:120]}")
            continue
        records.append(record)
    return records


def sent_requests(stats: Path) -> int:
    """Requests Locust recorded: ``summary.json`` (written when the run ends) or the
    Aggregated row of ``<prefix>_stats.csv`` (written every few seconds, so it
    can miss the last ones)."""
    if stats.suffix == ".json":
        return int(json.loads(stats.read_text())["requests"])
    with stats.open() as handle:
        for row in csv.DictReader(handle):
            if row.get("Name") == "Aggregated":
                return int(row["Request Count"])
    msg = f"{stats}: no Aggregated row"
    raise ValueError(msg)


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


def audit(
    run_id: str,
    stats: Path,
    frontend_log: Path,
    backend_log: Path,
    segments: Path | None = None,
    allowed_errors: str | None = None,
) -> Report:
    report = Report(sent=sent_requests(stats))
    front = read_log(frontend_log, report, "frontend")
    back = read_log(backend_log, report, "backend")
    prefix = f"{run_id}-"

    def of_run(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            r
            for r in records
            if r.get("logger") == ACCESS_LOGGER and str(r.get("request_id", "")).startswith(prefix)
        ]

    front_access, back_access = of_run(front), of_run(back)
    report.frontend_lines = len(front_access)
    per_request = Counter(r["request_id"] for r in front_access)
    report.gap("frontend: requests without an access line", max(0, report.sent - len(per_request)))
    if len(per_request) > report.sent:
        report.notes.append(
            f"{len(per_request) - report.sent} frontend requests not in Locust's figures "
            "(in flight when the run stopped, or figures written before the end)"
        )
    doubled = {rid: n for rid, n in per_request.items() if n > 1}
    report.gap(
        "frontend: requests with more than one access line",
        sum(n - 1 for n in doubled.values()),
        next(iter(doubled), ""),
    )
    _check_backend_calls(front_access, back_access, report)
    allowed = re.compile(allowed_errors) if allowed_errors else None
    for service, records in (("frontend", front), ("backend", back)):
        for record in records:
            if record.get("level") in ("error", "critical") and not (
                allowed and allowed.search(json.dumps(record))
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


def _check_traces(front: list[dict[str, Any]], path: Path, report: Report) -> None:
    documents = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    frontend = {d["trace_id"]: d for d in documents if d.get("name") == "frontend"}
    backend_parents = {
        (d["trace_id"], d.get("parent_id")) for d in documents if d.get("name") == "backend"
    }
    sampled = [r for r in front if r.get("trace_id") in frontend]
    report.notes.append(f"traces: {len(sampled)} of {len(front)} requests sampled")
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


def render(report: Report) -> str:
    lines = [
        f"Locust sent {report.sent} requests; the frontend logged {report.frontend_lines} "
        f"access lines for this run.",
    ]
    if report.ok:
        lines.append("STEP3 audit: no gap (nothing lost, doubled, mislevelled or untraced).")
    else:
        lines.append("STEP3 audit: GAPS")
        lines += [f"  {name}: {count}" for name, count in sorted(report.gaps.items())]
    lines += [f"  - {note}" for note in report.notes]
    return "\n".join(lines)
