#!/usr/bin/env python3
"""Set up the environment and run the project locally: the README's two commands.

    python3 dev.py up     install (locked) into .venv, start backend and frontend
    python3 dev.py test   install (locked) into .venv, run lint, types and tests

Needs only Python 3.11+ on the machine: uv, pinned below, is installed into
``.venv`` first and installs everything else from ``uv.lock``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
UV_VERSION = "0.13.9"
# checkov pins old versions of boto3 and others: it gets a virtual environment
# of its own, or pip backtracks through hundreds of releases.
CHECKOV_VENV = ROOT / ".venv-checkov"
CHECKOV_VERSION = "3.3.30"
# Commands the tests run, and the Debian packages that bring them.
TEST_COMMANDS = {
    "wrk": "wrk",
    "taskset": "util-linux",
    # actionlint checks the workflows' run: scripts with it.
    "shellcheck": "shellcheck",
}
# The real Fluent Bit the log router tests run, found as tests/firelens/router.py
# finds it, and the Debian packages of the libraries it links.
FLUENT_BIT_SHARED = ROOT.parent / "shared/tools/fluent-bit-4.2.2/bin/fluent-bit"
FLUENT_BIT_PACKAGES = {
    "libssl3",
    "libyaml-0-2",
    "libsqlite3-0",
    "libc-ares2",
    "libzstd1",
    "libnghttp2-14",
    "libsystemd0",
}
STARTUP_TIMEOUT_SECONDS = 30

LINT_AND_TYPES = [
    ["ruff", "check", "."],
    ["ruff", "format", "--check", "."],
    ["mypy", "servicekit/src", "backend/src", "frontend/src", "tools/src", "error_notifier"],
]


def ensure_environment() -> None:
    """Create ``.venv`` with the pinned uv, then sync it exactly to ``uv.lock``."""
    if sys.version_info < (3, 11):
        sys.exit(f"Python 3.11 or newer is needed (this is {sys.version.split()[0]})")
    uv = BIN / "uv"
    if not PYTHON.exists():
        run([sys.executable, "-m", "venv", str(VENV)])
    if not _has_uv(uv):
        run([str(PYTHON), "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}"])
    # Compiled bytecode: start-up is several times faster, and PYTHONDONTWRITEBYTECODE
    # (set in images and some shells) would stop Python from writing it later.
    run([str(uv), "sync", "--frozen", "--all-packages", "--compile-bytecode", "--quiet"])


def _has_uv(uv: Path) -> bool:
    if not uv.exists():
        return False
    out = subprocess.run([str(uv), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.split()[1:2] == [UV_VERSION]


def run(command: list[str], **kwargs: object) -> None:
    """Run a command from the repository root; exit with its status if it fails."""
    print("+", " ".join(command), flush=True)
    status = subprocess.run(command, cwd=ROOT, check=False, **kwargs).returncode  # type: ignore[call-overload]
    if status != 0:
        sys.exit(status)


def in_venv(command: list[str]) -> list[str]:
    return [str(BIN / command[0]), *command[1:]]


def fluent_bit() -> str | None:
    """``$FLUENT_BIT``, else ``fluent-bit`` on PATH, else the shared build beside the clone."""
    found = os.environ.get("FLUENT_BIT") or shutil.which("fluent-bit")
    if found:
        return found
    return str(FLUENT_BIT_SHARED) if os.access(FLUENT_BIT_SHARED, os.X_OK) else None


def _fluent_bit_libraries() -> set[str]:
    """The packages to install when a Fluent Bit is there but its libraries are not."""
    binary, ldd = fluent_bit(), shutil.which("ldd")
    if binary is None or ldd is None:
        return set()
    linked = subprocess.run([ldd, binary], capture_output=True, text=True, check=False)
    return FLUENT_BIT_PACKAGES if "not found" in linked.stdout else set()


def ensure_test_tools() -> None:
    """wrk, taskset, shellcheck, Fluent Bit's libraries and checkov, which are not Python
    dependencies."""
    missing = sorted(
        {pkg for cmd, pkg in TEST_COMMANDS.items() if shutil.which(cmd) is None}
        | _fluent_bit_libraries()
    )
    if missing:
        if not shutil.which("apt-get") or os.geteuid() != 0:
            sys.exit(f"the tests need these packages: {' '.join(missing)}; please install them")
        run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL)
        run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            stdout=subprocess.DEVNULL,
        )
    checkov = CHECKOV_VENV / "bin" / "checkov"
    if not checkov.exists():
        run([sys.executable, "-m", "venv", str(CHECKOV_VENV)])
        run(
            [
                str(CHECKOV_VENV / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                f"checkov=={CHECKOV_VERSION}",
            ]
        )


def test(pytest_args: list[str]) -> None:
    ensure_environment()
    ensure_test_tools()
    for command in LINT_AND_TYPES:
        run(in_venv(command))
    run([str(PYTHON), "-m", "pytest", *pytest_args])


def up() -> None:
    """Start backend and frontend; stop both on Ctrl+C, SIGTERM, or when either exits."""
    ensure_environment()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Each service takes its default port (backend 8081, frontend 8080).
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "HOST", "SERVICE_NAME")}
    env["PYTHONUNBUFFERED"] = "1"
    # Own sessions: Ctrl+C reaches only this script, which then sends each
    # service one SIGTERM (a second signal would cut their drain short).
    services = {
        name: subprocess.Popen([str(PYTHON), "-m", name], cwd=ROOT, env=env, start_new_session=True)
        for name in ("backend", "frontend")
    }
    ports = {"backend": "8081", "frontend": "8080"}
    try:
        for name, port in ports.items():
            _wait_ready(name, services[name], f"http://127.0.0.1:{port}/readyz")
        print(
            f"\nfrontend: http://127.0.0.1:{ports['frontend']}/  (Ctrl+C stops both)\n", flush=True
        )
        while all(process.poll() is None for process in services.values()):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in services.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in services.values():
            process.wait()


def _wait_ready(name: str, process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{name} exited with status {process.returncode} during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    sys.exit(f"{name} was not ready at {url} within {STARTUP_TIMEOUT_SECONDS}s")


def main() -> None:
    command, *rest = sys.argv[1:] or ["help"]
    if command == "test":
        test(rest)
    elif command == "up":
        up()
    elif command == "sync":
        ensure_environment()
    else:
        print(__doc__)
        sys.exit(0 if command in ("help", "-h", "--help") else 2)


if __name__ == "__main__":
    main()
