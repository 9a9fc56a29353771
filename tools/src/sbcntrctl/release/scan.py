"""The scan gate: Trivy's and Dockle's JSON reports against the accepted findings.

The pipeline fails on
- a Trivy vulnerability of severity CRITICAL or HIGH that has a fixed version
  (an unfixed one is reported, not fatal: nothing can be upgraded yet), and
- a Dockle finding of level FATAL or WARN,
unless ``.github/scan-accepted.toml`` lists it for that image with a reason
(and, optionally, a date after which the acceptance lapses).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbcntrctl.release.images import IMAGES, ReleaseError

ACCEPTED_FILE = Path(__file__).resolve().parents[4] / ".github" / "scan-accepted.toml"
FATAL_SEVERITIES = ("CRITICAL", "HIGH")
FATAL_LEVELS = ("FATAL", "WARN")
# Dockle reads the image from the local engine; pinned to a release.
DOCKLE_IMAGE = "goodwithtech/dockle:v0.4.15"


@dataclass(frozen=True)
class Finding:
    tool: str
    key: str
    level: str
    detail: str

    def __str__(self) -> str:
        return f"{self.tool} {self.level} {self.key}: {self.detail}"


@dataclass(frozen=True)
class Acceptance:
    tool: str
    key: str
    images: tuple[str, ...]
    reason: str
    until: dt.date | None

    def covers(self, finding: Finding, image: str, today: dt.date) -> bool:
        return (
            finding.tool == self.tool
            and finding.key == self.key
            and image in self.images
            and (self.until is None or today <= self.until)
        )


def trivy_findings(report: dict[str, Any]) -> list[Finding]:
    """Fixable CRITICAL/HIGH vulnerabilities in a ``trivy image --format json`` report."""
    found = []
    for result in report.get("Results") or []:
        for vuln in result.get("Vulnerabilities") or []:
            if vuln.get("Severity") in FATAL_SEVERITIES and vuln.get("FixedVersion"):
                detail = (
                    f"{vuln.get('PkgName')} {vuln.get('InstalledVersion')} -> "
                    f"{vuln.get('FixedVersion')} ({result.get('Target')})"
                )
                found.append(Finding("trivy", vuln["VulnerabilityID"], vuln["Severity"], detail))
    return found


def dockle_findings(report: dict[str, Any]) -> list[Finding]:
    """FATAL and WARN checkpoints of a ``dockle --format json`` report."""
    return [
        Finding("dockle", item["code"], item["level"], "; ".join(item.get("alerts") or []))
        for item in report.get("details") or []
        if item.get("level") in FATAL_LEVELS
    ]


def load_accepted(path: Path = ACCEPTED_FILE) -> list[Acceptance]:
    """The accepted findings; ReleaseError names the entry that lacks an image or reason."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    unknown = set(data) - {"trivy", "dockle"}
    if unknown:
        msg = f"{path}: unknown tables {sorted(unknown)} (only [[trivy]] and [[dockle]])"
        raise ReleaseError(msg)
    accepted = []
    for tool, entries in data.items():
        for number, entry in enumerate(entries, 1):
            where = f"{path}: [[{tool}]] entry {number}"
            key = entry.get("id" if tool == "trivy" else "code")
            images = tuple(entry.get("images") or ())
            reason = str(entry.get("reason") or "").strip()
            if not key or not images or not reason:
                msg = f"{where} needs {'id' if tool == 'trivy' else 'code'}, images and reason"
                raise ReleaseError(msg)
            if unknown_images := set(images) - set(IMAGES):
                msg = f"{where}: unknown images {sorted(unknown_images)}"
                raise ReleaseError(msg)
            until = entry.get("until")
            if until is not None and not isinstance(until, dt.date):
                msg = f"{where}: until must be a TOML date (2027-01-31)"
                raise ReleaseError(msg)
            accepted.append(Acceptance(tool, str(key), images, reason, until))
    return accepted


@dataclass
class Verdict:
    blocking: list[Finding]
    accepted: list[tuple[Finding, Acceptance]]

    @property
    def ok(self) -> bool:
        return not self.blocking


def verdict(
    image: str,
    trivy: dict[str, Any],
    dockle: dict[str, Any],
    accepted: list[Acceptance],
    today: dt.date | None = None,
) -> Verdict:
    today = today or dt.datetime.now(dt.UTC).date()
    result = Verdict([], [])
    for finding in [*trivy_findings(trivy), *dockle_findings(dockle)]:
        cover = next((a for a in accepted if a.covers(finding, image, today)), None)
        if cover is None:
            result.blocking.append(finding)
        else:
            result.accepted.append((finding, cover))
    return result


def render(image: str, result: Verdict) -> str:
    lines = [f"accepted: {f} ({a.reason})" for f, a in result.accepted]
    lines += [f"BLOCKING: {f}" for f in result.blocking]
    lines.append(
        f"{image}: scan passed"
        if result.ok
        else f"{image}: {len(result.blocking)} blocking finding(s); fix them, or accept each "
        f"in {ACCEPTED_FILE.name} with a reason"
    )
    return "\n".join(lines)


def run_dockle(ref: str, out: Path) -> None:
    """Run Dockle (its container, on the local engine) on ``ref``; write its JSON report."""
    command = [
        "docker",
        "run",
        "--rm",
        "--volume",
        "/var/run/docker.sock:/var/run/docker.sock:ro",
        DOCKLE_IMAGE,
        "--format",
        "json",
        "--exit-code",
        "0",
        ref,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        msg = f"dockle on {ref} exited {done.returncode}: {done.stderr.strip()[-500:]}"
        raise ReleaseError(msg)
    json.loads(done.stdout)  # a report, not an error page
    out.write_text(done.stdout, encoding="utf-8")
