"""What a load run records about itself, checked before the run starts.

* the run id, which marks every request (``X-Request-Id`` prefix) and every
  row the run writes; it must be a valid request id prefix, or the services
  would replace the ids and the audit could not find the run's lines;
* the report folder, by default ``reports/<run id>`` so two runs never share
  one ``summary.json``;
* ``--sample-pids``: which local processes' CPU to record.
"""

from __future__ import annotations

import re
from pathlib import Path

# Services keep an incoming X-Request-Id of 1-128 of these characters
# (docs/log-schema.md); the run id plus "-" and 16 hex digits must fit.
RUN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,80}$")
REPORTS = Path("reports")

# Rows the load test writes are recognisable by these (loadtest/README.md).
ITEM_NAME = "sbcntr-loadtest"
NOTIFICATION_CATEGORY = "loadtest"


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        msg = f"--run-id {run_id!r}: use 1-80 of A-Z a-z 0-9 . _ : - (it prefixes request ids)"
        raise ValueError(msg)
    return run_id


def report_dir(run_id: str, given: str) -> Path:
    """``given``, or ``reports/<run id>`` when empty."""
    return Path(given) if given else REPORTS / run_id


def check_reports_free(folder: Path) -> Path:
    """``folder``, unless it already holds a run's reports (a run id used again).

    A second run under one id would overwrite the first run's reports and mix
    its rows and log lines into the first's audit: refused, naming the way out.
    """
    if (folder / "summary.json").exists():
        msg = (
            f"{folder}/ already holds a run's reports (summary.json): give this run "
            "another --run-id (or --report-dir), or remove that folder"
        )
        raise ValueError(msg)
    return folder


def parse_pids(spec: str) -> dict[str, list[int]]:
    """``name=PID[ PID...],name=PID``: several PIDs of one name (separated by spaces,
    newlines or ``+``, as ``pgrep`` prints them) are added together."""
    found: dict[str, list[int]] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        name, sep, pids = part.partition("=")
        numbers = pids.replace("+", " ").split()
        if sep and name.strip() and not numbers:
            msg = f"--sample-pids: no PID for {name.strip()} (is the service running?)"
            raise ValueError(msg)
        if not sep or not name.strip() or not all(n.isdigit() for n in numbers):
            msg = f"--sample-pids: {part.strip()!r} is not name=PID (several PIDs: name=PID+PID)"
            raise ValueError(msg)
        found.setdefault(name.strip(), []).extend(int(n) for n in numbers)
    if not found:
        msg = "--sample-pids: no name=PID given"
        raise ValueError(msg)
    for name, pids_of in found.items():
        for pid in pids_of:
            if not running(pid):
                msg = f"--sample-pids: {name}={pid}: no such process"
                raise ValueError(msg)
    return found


def running(pid: int) -> bool:
    """Whether process ``pid`` runs: it exists and has not exited (a zombie, whose
    parent has not collected it yet, has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
