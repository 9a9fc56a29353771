"""``sbcntrctl audit`` says when the log files may be another run's."""

from __future__ import annotations

from pathlib import Path

from sbcntrctl.loadtest import audit
from tests.loadtest.test_units import pages, run_audit


def test_logs_of_another_run_get_a_hint_naming_the_runs_they_hold(tmp_path: Path) -> None:
    front, back = pages(30, run="steady-7")  # the logs of another run
    report = run_audit(tmp_path, 1400, front, back)
    assert report.gaps["frontend: requests without an access line"] == 1400
    text = audit.render(report)
    assert (
        "  - only 0 access lines of run r1 in the frontend's log: are these this run's log "
        "files? They hold access lines of other runs: steady-7 (30)."
    ) in text


def test_a_few_missing_lines_get_no_such_hint(tmp_path: Path) -> None:
    front, back = pages(10)
    report = run_audit(tmp_path, 11, front, back)
    assert report.gaps["frontend: requests without an access line"] == 1
    assert "are these this run's log files" not in audit.render(report)
