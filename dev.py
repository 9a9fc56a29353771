#!/usr/bin/env python3
"""Set up the environment and run the project locally: the README's commands.

    python3 dev.py up     install (locked) into .venv, start backend and frontend
                          (dev.py up --help: ports, --json, --log-dir DIR, --drain,
                          --pid-file FILE)
    python3 dev.py pids FILE
                          frontend=PID,backend=PID (Locust's --sample-pids) from the
                          file `up --pid-file FILE` writes, each checked to be the
                          process serving its port
    python3 dev.py test   install (locked) into .venv, run lint, types and tests
                          (--quick: without the tests marked slow, for the inner loop;
                          other arguments go to pytest: dev.py test tests/backend -x)
    python3 dev.py sync   install (locked) into .venv and nothing else: for the
                          operator tools (.venv/bin/sbcntrctl) and the benchmark

Needs only Python 3.11+ on the machine: uv, pinned below, is installed into
``.venv`` first and installs everything else from ``uv.lock``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import ClassVar

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
    # The page tests drive Debian's Chromium headless through its driver.
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
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
    [
        "mypy",
        "servicekit/src",
        "backend/src",
        "frontend/src",
        "tools/src",
        "error_notifier",
        "deploy_hook",
    ],
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
    """wrk, taskset, shellcheck, Chromium, Fluent Bit's libraries and checkov, which are not
    Python dependencies."""
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


# What every test run prints at its end: the slowest tests, so a slow one shows.
DURATIONS = ["--durations=30", "--durations-min=1"]


def test(args: list[str]) -> None:
    """Lint and types, then the tests; ``--quick`` for the inner loop.

    With no pytest arguments the suite runs in two parts: first every test that
    can share the machine, on one pytest-xdist worker per core, then the tests
    marked ``serial`` (they measure time, CPU or throughput) on their own.
    ``--quick`` leaves out the tests marked ``slow`` (each area keeps at least
    one test of its real processes). Other arguments go to one plain pytest run
    (``dev.py test tests/backend -x``). The slowest tests are listed at the end.
    """
    quick = "--quick" in args
    pytest_args = [arg for arg in args if arg != "--quick"]
    ensure_environment()
    ensure_test_tools()
    for command in LINT_AND_TYPES:
        run(in_venv(command))
    pytest = [str(PYTHON), "-m", "pytest"]
    if not any(arg.startswith("--durations") for arg in pytest_args):
        pytest += DURATIONS
    if pytest_args and not quick:
        run([*pytest, *pytest_args])
        return
    skip_slow = " and (quick or not slow)" if quick else ""
    workers = str(max(2, os.cpu_count() or 1))
    parallel = _status([*pytest, "-n", workers, "-m", f"not serial{skip_slow}", *pytest_args])
    alone = _status([*pytest, "-m", f"serial{skip_slow}", *pytest_args])
    # pytest's 5: nothing selected (a part --quick or the arguments left empty).
    failed = [status for status in (parallel, alone) if status not in (0, 5)]
    sys.exit(failed[0] if failed else 0)


def _status(command: list[str]) -> int:
    """Run a command from the repository root; its exit status."""
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, check=False).returncode


# --- dev.py up: the two services under one supervisor ------------------------

SERVICES = ("backend", "frontend")  # start order: the frontend calls the backend
DEFAULT_PORTS = {"backend": 8081, "frontend": 8080}
STOP_TIMEOUT_SECONDS = 30
IDENTITY_HEADER = "x-served-by"  # servicekit.identity: "task=<host>:<pid>" when not on ECS


class StartupError(Exception):
    """A service exited or was not ready during start-up; the message says which."""


def _up_options(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dev.py up",
        description="Start the backend and the frontend on loopback and watch them.",
    )
    for name in ("frontend", "backend"):
        parser.add_argument(
            f"--{name}-port",
            type=int,
            default=DEFAULT_PORTS[name],
            help=f"the {name}'s port on 127.0.0.1 (default: %(default)s)",
        )
    parser.add_argument(
        "--json", action="store_true", help="print the services' JSON log lines as they are"
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        metavar="DIR",
        help="also write each service's JSON lines to DIR/backend.log and DIR/frontend.log",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=None,
        metavar="SECONDS",
        help="drain delay on stop (SHUTDOWN_DRAIN_SECONDS; default 0 here, 3 in production)",
    )
    parser.add_argument(
        "--pid-file",
        type=Path,
        metavar="FILE",
        help="write each service's pid and URL here while it serves (for `dev.py pids FILE`); "
        "removed on exit",
    )
    return parser.parse_args(args)


class Console:
    """What ``up`` prints: one short line per service log record, or the JSON as it is.

    Lines are written whole under a lock, so the services' output never
    interleaves mid-line. Colours only on a terminal, and never with NO_COLOR.
    """

    _COLOURS: ClassVar = {"backend": "35", "frontend": "34"}
    _LEVELS: ClassVar = {"warning": "33", "error": "31", "critical": "31"}
    _HIDDEN = frozenset(
        {"timestamp", "level", "service", "logger", "event", "request_id", "trace_id", "exception"}
    )

    def __init__(self, *, raw: bool) -> None:
        self.raw = raw
        self.colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        self._lock = threading.Lock()

    def _paint(self, code: str | None, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour and code else text

    def write(self, text: str) -> None:
        with self._lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def say(self, text: str, *, error: bool = False) -> None:
        """A line of dev.py's own."""
        self.write(self._paint("31" if error else "1", f"dev.py: {text}"))

    def service_line(self, name: str, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\n")
        if self.raw:
            self.write(text)
            return
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            self.write(f"{self._paint(self._COLOURS.get(name), f'{name:<8}')} {text}")
            return
        self.write(self.format(name, record))

    def format(self, name: str, record: dict[str, object]) -> str:
        """One short line: local time, service, then the request or the event."""
        when = _local_time(str(record.get("timestamp", "")))
        head = f"{when} {self._paint(self._COLOURS.get(name), f'{name:<8}')}"
        level = str(record.get("level", "info"))
        if record.get("logger") == "servicekit.access":
            status = record.get("status", 0)
            code = {2: "32", 3: "36", 4: "33", 5: "31"}.get(int(str(status)) // 100)
            body = (
                f"{record.get('method')} {record.get('path')} {self._paint(code, str(status))} "
                f"{float(str(record.get('duration_ms', 0))):.1f} ms"
            )
            if record.get("cancelled"):
                body += " cancelled"
        else:
            event = str(record.get("event", "")).replace(" (Press CTRL+C to quit)", "")
            fields = " ".join(
                f"{key}={value}"
                for key, value in record.items()
                if key not in self._HIDDEN and value is not None and not _bulky(key, value)
            )
            marker = (
                "" if level in ("info", "debug") else self._paint(self._LEVELS.get(level), level)
            )
            body = " ".join(part for part in (marker, event, fields) if part)
        exception = record.get("exception")
        if exception:
            body += "\n" + str(exception).rstrip()
        return f"{head} {body}"


def _bulky(key: str, value: object) -> bool:
    # What a console line leaves out: the metrics lines' EMF directive and
    # latency distributions (the counts and the route stay).
    return key.startswith("_") or isinstance(value, dict | list)


def _local_time(timestamp: str) -> str:
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now().strftime("%H:%M:%S")  # local time, as the console shows
    return moment.astimezone().strftime("%H:%M:%S")


def describe_exit(status: int) -> str:
    """A process's exit status as a person reads it."""
    if status < 0:
        try:
            return f"status {status} (killed by {signal.Signals(-status).name})"
        except ValueError:
            return f"status {status} (killed by signal {-status})"
    meaning = {
        0: "",
        1: " (requests were cut short, or an error: see its last lines above)",
        2: " (invalid configuration: see the line above)",
        3: " (start-up failed: see the lines above)",
    }
    return f"status {status}{meaning.get(status, '')}"


def port_owner(port: int) -> str | None:
    """Who listens on TCP ``port``: "pid N (command)", or None when it cannot be told."""
    inodes = _listening_inodes(port)
    if inodes:
        for fd_dir in Path("/proc").glob("[0-9]*/fd"):
            try:
                links = {str(fd.readlink()) for fd in fd_dir.iterdir()}
            except OSError:
                continue
            if any(f"socket:[{inode}]" in links for inode in inodes):
                pid = fd_dir.parent.name
                try:
                    cmdline = (fd_dir.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    cmdline = b""
                return f"pid {pid} ({cmdline.decode(errors='replace').strip()[:120]})"
    if shutil.which("lsof"):
        found = subprocess.run(
            ["lsof", "-nP", f"-iTCP:{port}", "-sTCP:LISTEN", "-Fpc"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        pids = [field[1:] for field in found if field.startswith("p")]
        commands = [field[1:] for field in found if field.startswith("c")]
        if pids:
            return f"pid {pids[0]} ({commands[0] if commands else '?'})"
    return None


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port``, from Linux's /proc/net/tcp and tcp6."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local_address is ADDR:PORT in hex; state 0A is LISTEN.
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def check_port_free(name: str, port: int) -> None:
    """Exit with a line naming the port, and its owner when found, if ``port`` is taken."""
    with socket.socket() as sock:
        # As uvicorn binds: SO_REUSEADDR, so a socket in TIME_WAIT is no conflict.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return
        except OSError as exc:
            reason = exc.strerror or str(exc)
    owner = port_owner(port)
    held = f" by {owner}" if owner else ""
    sys.exit(
        f"dev.py: port {port} for the {name} is already in use{held} ({reason}).\n"
        f"Stop that process (an earlier `dev.py up`?) or choose another port with "
        f"--{name}-port."
    )


class Supervised:
    """One service process: its output to the console and its log file, its readiness."""

    def __init__(
        self, name: str, port: int, env: dict[str, str], console: Console, log_dir: Path | None
    ) -> None:
        self.name = name
        self.port = port
        self.env = {**env, "PORT": str(port)}
        self.console = console
        self.log = (log_dir / f"{name}.log").open("ab") if log_dir else None
        self.process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # Own session: Ctrl+C reaches only dev.py, which then sends each
        # service one SIGTERM (a second signal would cut its drain short).
        self.process = subprocess.Popen(
            [str(PYTHON), "-m", self.name],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._copy_output, args=(self.process,))
        self._reader.start()

    def _copy_output(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if self.log is not None:
                self.log.write(line)
                self.log.flush()
            self.console.service_line(self.name, line)

    def run_once(self, *args: str) -> int:
        """Run ``python -m <service> ARGS`` to its end, its output shown as the service's."""
        process = subprocess.Popen(
            [str(PYTHON), "-m", self.name, *args],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self._copy_output(process)
        return process.wait()

    def exited(self) -> int | None:
        """The exit status once the process has ended (and its output is printed)."""
        if self.process is None:
            return None
        status = self.process.poll()
        if status is not None and self._reader is not None:
            self._reader.join()
        return status

    def wait_ready(self) -> None:
        """Return once this process (not another on the port) answers ``/readyz`` with 200."""
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        ours = f":{self.process.pid}"
        while time.monotonic() < deadline:
            status = self.exited()
            if status is not None:
                msg = f"{self.name} exited with {describe_exit(status)} during start-up"
                raise StartupError(msg)
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:  # noqa: S310
                    served_by = response.headers.get(IDENTITY_HEADER, "")
                    if response.status == 200 and served_by.split(";")[0].endswith(ours):
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        msg = f"{self.name} was not ready at {self.url}/readyz within {STARTUP_TIMEOUT_SECONDS}s"
        raise StartupError(msg)

    def stop(self) -> int | None:
        """SIGTERM, wait for the drain, SIGKILL if it does not end; its exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()
        return self.exited()

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def write_pid_file(path: Path, services: dict[str, Supervised]) -> None:
    """``{"frontend": {"pid": N, "url": U}, ...}``, replaced whole (never half-written)."""
    state = {
        name: {"pid": service.process.pid, "url": service.url}
        for name, service in services.items()
        if service.process is not None and service.exited() is None
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(state) + "\n")
    partial.replace(path)


def served_by_pid(url: str) -> int | None:
    """The pid of the process answering ``url``/readyz on this host (its identity header)."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:  # noqa: S310
            served_by = response.headers.get(IDENTITY_HEADER, "")
    except urllib.error.HTTPError as exc:  # 503 while draining still names the process
        served_by = exc.headers.get(IDENTITY_HEADER, "")
    except (urllib.error.URLError, OSError):
        return None
    task = served_by.split(";")[0].removeprefix("task=")
    host, _, pid = task.rpartition(":")
    return int(pid) if pid.isdigit() and host == socket.gethostname() else None


def pids(args: list[str]) -> None:
    """Print ``frontend=PID,backend=PID`` from ``up --pid-file``'s file; refuse stale PIDs.

    Each PID must be the process answering its URL right now: a file left by a
    `dev.py up` that has ended, or a service restarted since, is refused with
    exit status 1 and one line saying which, so no other process's CPU is sampled.
    """
    parser = argparse.ArgumentParser(
        prog="dev.py pids",
        description="frontend=PID,backend=PID for Locust's --sample-pids, from the file "
        "`dev.py up --pid-file FILE` writes; each PID checked to serve its URL now.",
    )
    parser.add_argument("file", type=Path, help="the file given to `dev.py up --pid-file`")
    path = parser.parse_args(args).file
    try:
        state = json.loads(path.read_text())
        found = {name: (int(state[name]["pid"]), str(state[name]["url"])) for name in SERVICES}
    except FileNotFoundError:
        sys.exit(f"dev.py pids: no {path}: is `dev.py up --pid-file {path}` running?")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.exit(f"dev.py pids: {path} is not a file `dev.py up --pid-file` wrote ({exc})")
    for name, (pid, url) in found.items():
        serving = served_by_pid(url)
        if serving != pid:
            now = f"pid {serving}" if serving else "no process of this machine"
            sys.exit(
                f"dev.py pids: {path} says the {name} is pid {pid}, but {now} serves {url}: "
                "is the `dev.py up` that wrote it still running?"
            )
    print(",".join(f"{name}={found[name][0]}" for name in ("frontend", "backend")))


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _watch_enter(pressed: threading.Event) -> None:
    """Set ``pressed`` for each line read from stdin (Enter on a terminal)."""
    for _ in sys.stdin:
        pressed.set()


def up(args: list[str]) -> None:
    """Start backend and frontend, report what happens to them, stop both on Ctrl+C.

    Exits non-zero when a port is taken, a service fails to start, the
    frontend exits, or the backend is down when the run ends. A backend that
    exits leaves the frontend up (its pages answer 503) until Enter restarts it.
    """
    options = _up_options(args)
    ports = {"backend": options.backend_port, "frontend": options.frontend_port}
    for name in SERVICES:
        check_port_free(name, ports[name])
    ensure_environment()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    console = Console(raw=options.json)

    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "HOST", "SERVICE_NAME")}
    env["PYTHONUNBUFFERED"] = "1"
    env["BACKEND_URL"] = f"http://127.0.0.1:{ports['backend']}"
    # A developer's Ctrl+C has no load balancer to wait for.
    if options.drain is not None:
        env["SHUTDOWN_DRAIN_SECONDS"] = str(options.drain)
    else:
        env.setdefault("SHUTDOWN_DRAIN_SECONDS", "0")
    if options.log_dir is not None:
        options.log_dir.mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            (options.log_dir / f"{name}.log").write_bytes(b"")
        console.say(
            "JSON logs go to "
            + " and ".join(str(options.log_dir / f"{name}.log") for name in SERVICES)
        )
    services = {
        name: Supervised(name, ports[name], env, console, options.log_dir) for name in SERVICES
    }
    status = 1
    try:
        status = _run(services, console, options.pid_file)
    except KeyboardInterrupt:
        status = 1 if services["backend"].exited() is not None else 0
    except StartupError as exc:
        console.say(str(exc), error=True)
    finally:
        for service in reversed(services.values()):
            running = service.exited() is None
            stop_status = service.stop()
            if running and stop_status:
                console.say(f"{service.name} stopped with {describe_exit(stop_status)}", error=True)
                status = status or 1
            service.close()
        if options.pid_file is not None:
            options.pid_file.unlink(missing_ok=True)
    sys.exit(status)


def _run(services: dict[str, Supervised], console: Console, pid_file: Path | None) -> int:
    backend, frontend = services["backend"], services["frontend"]
    # The schema first, as every deployment does (docs/migrations.md); demo data on a new database.
    status = backend.run_once("migrate", "--seed")
    if status != 0:
        msg = f"python -m backend migrate --seed exited with {describe_exit(status)}"
        raise StartupError(msg)
    for service in (backend, frontend):
        service.start()
        service.wait_ready()
        console.say(f"{service.name} ready at {service.url} (pid {service.process.pid})")  # type: ignore[union-attr]
    if pid_file is not None:
        write_pid_file(pid_file, services)
        console.say(f"pids in {pid_file} (dev.py pids {pid_file})")
    console.say(f"open {frontend.url}/  (Ctrl+C stops both)")

    enter = threading.Event()
    threading.Thread(target=_watch_enter, args=(enter,), daemon=True).start()
    backend_down = False
    while True:
        status = frontend.exited()
        if status is not None:
            console.say(f"frontend exited with {describe_exit(status)}; stopping", error=True)
            return 1
        status = backend.exited()
        if status is not None and not backend_down:
            backend_down = True
            console.say(
                f"backend exited with {describe_exit(status)}. The frontend stays up and "
                "answers 503 until the backend is back: press Enter to restart it.",
                error=True,
            )
            enter.clear()
        if backend_down and enter.is_set():
            enter.clear()
            console.say("restarting the backend")
            backend.start()
            try:
                backend.wait_ready()
            except StartupError as exc:
                console.say(f"{exc}. Press Enter to try again.", error=True)
                continue
            backend_down = False
            if pid_file is not None:
                write_pid_file(pid_file, services)
            console.say(f"backend is back at {backend.url} (pid {backend.process.pid})")  # type: ignore[union-attr]
        time.sleep(0.2)


def main() -> None:
    command, *rest = sys.argv[1:] or ["help"]
    if command == "test":
        test(rest)
    elif command == "up":
        up(rest)
    elif command == "pids":
        pids(rest)
    elif command == "sync":
        ensure_environment()
    else:
        print(__doc__)
        sys.exit(0 if command in ("help", "-h", "--help") else 2)


if __name__ == "__main__":
    main()
