"""The smoke check after a deploy: the pages and the API answer, then a short load.

1. ``GET`` each page and the JSON API once: every answer must be 200 with the
   content it should have. The list is the frontend's in ``deploy_hook/checks.py``,
   the one the deploy hook runs against a test listener before production traffic
   moves: one list, loaded from the checkout (like ``loadtest/``), since the hook's
   zip must stand alone and sbcntrctl never ships in an image.
2. A short steady Locust run (``loadtest/``) with its thresholds: error ratio,
   p95, and the rate it reached; Locust exits 1 when one is missed.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from sbcntrctl.release.images import ReleaseError

ROOT = Path(__file__).resolve().parents[4]
LOADTEST_DIR = ROOT / "loadtest"
CHECKS_FILE = ROOT / "deploy_hook" / "checks.py"
CHECKS_MODULE = "deploy_hook.checks"


def checks() -> ModuleType:
    """``deploy_hook/checks.py`` as a module, loaded once (or the one already imported)."""
    loaded = sys.modules.get(CHECKS_MODULE)
    if loaded is None:
        spec = importlib.util.spec_from_file_location(CHECKS_MODULE, CHECKS_FILE)
        if spec is None or spec.loader is None:
            msg = f"cannot load the smoke checks from {CHECKS_FILE}"
            raise ReleaseError(msg)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[CHECKS_MODULE] = loaded  # dataclasses look their module up while created
        spec.loader.exec_module(loaded)
    return loaded


def paths() -> list[str]:
    """The paths the smoke check requests, in order."""
    return [check.path for check in checks().CHECKS["frontend"]]


def check_pages(base_url: str, timeout: float = 10.0) -> list[str]:
    """One line per check; ReleaseError naming every check that failed and why."""
    shared = checks()
    results = shared.run(base_url, shared.CHECKS["frontend"], timeout=timeout)
    failed = shared.failures(results)
    if failed:
        named = ", ".join(
            f"{r.check.path} ({'no answer' if r.status is None else r.status}: {r.problem})"
            for r in failed
        )
        msg = f"smoke check of {base_url} failed: {named}"
        raise ReleaseError(msg)
    return [r.line() for r in results]


def locust_command(base_url: str, seconds: int, rps: float, report_dir: Path) -> list[str]:
    return [
        str(Path(sys.executable).with_name("locust")),
        "-f",
        str(LOADTEST_DIR),
        "--headless",
        "--host",
        base_url,
        "--shape",
        "steady",
        "--target-rps",
        f"{rps:g}",
        "--shape-duration",
        str(seconds),
        "--max-error-ratio",
        "0.01",
        "--max-p95-ms",
        "1000",
        "--report-dir",
        str(report_dir),
        "--only-summary",
    ]


def run_load(base_url: str, seconds: int, rps: float, report_dir: Path) -> int:
    """Locust's exit status: 0 when every threshold held."""
    report_dir.mkdir(parents=True, exist_ok=True)
    command = locust_command(base_url, seconds, rps, report_dir)
    return subprocess.run(command, check=False).returncode
