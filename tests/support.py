"""Running the real services for tests: processes on free loopback ports.

Each service runs as ``python -m <service>``, exactly as its container does,
with its stdout captured to a file so tests can read its JSON log lines.
"""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
# Variables a developer's shell may set that would change what a test runs.
_SCRUBBED = (
    "PORT",
    "HOST",
    "SERVICE_NAME",
    "LOG_LEVEL",
    "ENVIRONMENT",
    "DATABASE_URL",
    "DATABASE_PASSWORD",
    "DATABASE_AUTH",
    "DATABASE_SSL_ROOT_CERT",
    "BACKEND_URL",
    "AWS_XRAY_SDK_ENABLED",
    "AWS_XRAY_DAEMON_ADDRESS",
    "AWS_XRAY_CONTEXT_MISSING",
    "XRAY_SAMPLING_RULES",
    "TRACING_BACKEND",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "SHUTDOWN_DRAIN_SECONDS",
    "SHUTDOWN_GRACE_SECONDS",
)


def router_nodes(app: Any) -> list[Any]:
    """The app's routes that are no route or mount of their own: included routers' nodes."""
    from fastapi.routing import APIRoute  # noqa: PLC0415
    from starlette.routing import Mount, Route  # noqa: PLC0415

    return [r for r in app.router.routes if not isinstance(r, (APIRoute, Route, Mount))]


def assert_routes_on_the_app(
    build: Callable[[], Any], monkeypatch: pytest.MonkeyPatch, *modules: Any
) -> None:
    """The app ``build`` makes serves its routers from its own router, documented as if included.

    ``modules`` are those that call ``include_routes``: a second app is built
    with their ``include_routes`` replaced by FastAPI's ``include_router``, and
    both apps' OpenAPI documents must be equal.
    """
    app = build()
    assert router_nodes(app) == [], "routes walked as included routers"

    def include_router(app: Any, router: Any) -> None:
        app.include_router(router)

    for module in modules:
        monkeypatch.setattr(module, "include_routes", include_router)
    included = build()
    assert router_nodes(included)
    assert app.openapi() == included.openapi()


def stop_process(process: subprocess.Popen[Any], sig: int, timeout: float) -> int:
    """Send ``sig`` unless the process has exited; its exit status.

    A process still running after ``timeout`` seconds is killed and the
    timeout is raised: the test that expected it to stop fails.
    """
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def assert_checkov_passes(directory: Path, framework: str) -> None:
    """Run checkov's ``framework`` checks over ``directory``: none failed, some passed.

    checkov lives in its own environment
    (``.venv-checkov``, made by ``dev.py test``): its pins clash with the project's.
    """
    assert CHECKOV.exists(), "dev.py test installs checkov into .venv-checkov"
    result = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(directory),
            "--framework",
            framework,
            "--skip-download",
            "--quiet",
            "--compact",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"Failed checks: 0\b", result.stdout), result.stdout[-3000:]
    assert re.search(r"Passed checks: [1-9]", result.stdout), result.stdout[-3000:]


@contextmanager
def cycles_left(modules: tuple[str, ...], ignored: Collection[str] = ()) -> Iterator[Counter[str]]:
    """The objects of ``modules`` that the block leaves in reference cycles, counted by type.

    The collector runs once, then stays off for the block; at its end a full
    collection keeps what it finds unreachable (``gc.DEBUG_SAVEALL``), and
    the counter receives the names (``module.QualName``) of those whose name
    starts with one of ``modules``, save the ``ignored`` names, before they
    are let go.
    """
    cyclic: Counter[str] = Counter()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield cyclic
        gc.collect()
        for obj in gc.garbage:
            name = f"{type(obj).__module__}.{type(obj).__qualname__}"
            if name.startswith(modules) and name not in ignored:
                cyclic[name] += 1
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@contextmanager
def server_in_thread(config: uvicorn.Config) -> Iterator[uvicorn.Server]:
    """A uvicorn server on ``config`` in a thread of the test process, started; stopped after.

    For the tests that need the server in their own process (its garbage
    collector, its objects); the others start services as processes.
    """
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.02)
            assert thread.is_alive(), "the server failed to start"
        yield server
    finally:
        server.should_exit = True
        thread.join(10)


def free_port() -> int:
    """A TCP port nothing listens on right now (bound once to port 0, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith("FAULT_")}
    env["PYTHONUNBUFFERED"] = "1"
    # No load balancer to wait for in tests; the shutdown tests set their own.
    env["SHUTDOWN_DRAIN_SECONDS"] = "0"
    env.update(overrides)
    return env


@dataclass
class Service:
    """One running service process and where its output goes."""

    name: str
    port: int
    env: dict[str, str]
    stdout_path: Path
    stderr_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_lines(self) -> list[dict[str, Any]]:
        """Every stdout line parsed as JSON; fails the test on a line that is not."""
        lines = []
        for number, raw in enumerate(self.stdout_path.read_text().splitlines(), 1):
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                msg = f"{self.name} stdout line {number} is not JSON: {raw[:200]!r}"
                raise AssertionError(msg) from exc
            assert isinstance(record, dict), f"line {number} is not a JSON object"
            lines.append(record)
        return lines

    def access_lines(self) -> list[dict[str, Any]]:
        return [r for r in self.log_lines() if r.get("logger") == "servicekit.access"]

    def wait_for_lines(
        self, match: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 5
    ) -> list[dict[str, Any]]:
        """The log lines ``match`` accepts, once ``count`` of them are written (or at the timeout).

        A running service writes a line when its event loop's turn ends
        (``servicekit.logs``), and its access line after the response is
        sent: a client can see the response before the line exists.
        """
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.log_lines() if match(line)]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def access_lines_for(
        self, request_id: str, count: int, timeout: float = 5
    ) -> list[dict[str, Any]]:
        """The access lines of ``request_id``, once ``count`` of them are written."""
        return self.wait_for_lines(
            lambda line: (
                line.get("logger") == "servicekit.access" and line.get("request_id") == request_id
            ),
            count,
            timeout,
        )

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def send(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        return stop_process(self.process, sig, timeout)

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = (
                    f"{self.name} exited with {self.process.returncode} during start-up:\n"
                    f"{self.stdout_path.read_text()[-3000:]}\n{self.stderr()[-3000:]}"
                )
                raise AssertionError(msg)
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop(signal.SIGKILL)
        msg = f"{self.name} not ready within {timeout}s:\n{self.stdout_path.read_text()[-3000:]}"
        raise AssertionError(msg)


def start_service(
    name: str,
    workdir: Path,
    *,
    port: int | None = None,
    env: dict[str, str] | None = None,
    wait: bool = True,
    run_number: int = 0,
    migrate: bool = True,
) -> Service:
    """Start ``python -m <name>`` on a free loopback port; wait for ``/readyz`` by default.

    The backend's database is first migrated and seeded with ``python -m
    backend migrate --seed``, as ``dev.py up`` does (``migrate=False``: not).
    """
    port = port or free_port()
    full_env = base_env(PORT=str(port), **(env or {}))
    if name == "backend" and migrate:
        migrate_database(workdir, full_env)
    stdout_path = workdir / f"{name}-{port}-{run_number}.stdout"
    stderr_path = workdir / f"{name}-{port}-{run_number}.stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", name], cwd=workdir, env=full_env, stdout=out, stderr=err
        )
    service = Service(name, port, full_env, stdout_path, stderr_path, process)
    if wait:
        service.wait_ready()
    return service


def migrate_database(
    workdir: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m backend migrate --seed`` (or ``args``) with ``env``; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "backend", *(args or ("migrate", "--seed"))],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"{args} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )
    return result


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


class ScriptedBackend:
    """A real HTTP server on loopback that answers from a script, for client-behaviour tests.

    ``responses`` is consumed one per request: ``(status, body)`` or ``"hang"``
    (accept, read the request, never answer). After the script runs out, the
    last entry repeats. Every request's method, path and headers are recorded
    in ``requests``, and its body in ``bodies``.
    """

    def __init__(self, responses: list[tuple[int, bytes] | str]) -> None:
        import http.server  # noqa: PLC0415 - test helper only
        import threading  # noqa: PLC0415

        self.responses = list(responses)
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.bodies: list[bytes] = []
        self._release = threading.Event()
        scripted = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                scripted.bodies.append(self.rfile.read(length) if length else b"")
                scripted.requests.append((self.command, self.path, dict(self.headers)))
                step = (
                    scripted.responses.pop(0)
                    if len(scripted.responses) > 1
                    else scripted.responses[0]
                )
                if step == "hang":
                    scripted._release.wait(30)
                    return
                assert isinstance(step, tuple)
                status, body = step
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer  # noqa: N815

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedBackend:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


class SegmentCollector:
    """A UDP listener on loopback in the X-Ray daemon's place; keeps every segment document.

    Each datagram is ``{"format":"json","version":1}\\n<segment JSON>``.
    """

    def __init__(self) -> None:
        import threading  # noqa: PLC0415 - test helper only

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.segments: list[dict[str, Any]] = []
        self.bad_datagrams: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            header, _, body = data.partition(b"\n")
            try:
                assert json.loads(header) == {"format": "json", "version": 1}
                self.segments.append(json.loads(body))
            except (AssertionError, ValueError):
                self.bad_datagrams.append(data)

    def wait_for(self, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        """Wait until at least ``count`` segments arrived; return them all."""
        deadline = time.monotonic() + timeout
        while len(self.segments) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.segments)

    def __enter__(self) -> SegmentCollector:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


class OtlpReceiver:
    """An OTLP/HTTP endpoint on loopback in the collector's place; keeps every span.

    Decodes each ``POST /v1/traces`` body as an ``ExportTraceServiceRequest``
    (the opentelemetry-proto package, protobuf encoding as the exporter sends
    it) and answers what a collector answers. Spans are kept as dicts with
    hex ids (``trace_id`` in X-Ray's ``1-xxxxxxxx-...`` form), the resource's
    ``service``, ``kind`` (``SERVER``/``CLIENT``...), ``attributes`` and ``status``.
    """

    def __init__(self) -> None:
        import http.server  # noqa: PLC0415 - test helper only
        import threading  # noqa: PLC0415

        from google.protobuf.json_format import MessageToDict  # noqa: PLC0415
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: PLC0415
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        receiver = self
        self.spans: list[dict[str, Any]] = []
        self.requests = 0
        self.bad_requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/traces" or "protobuf" not in self.headers["Content-Type"]:
                    receiver.bad_requests.append(f"{self.path} {self.headers['Content-Type']}")
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.requests += 1
                for resource_spans in request.resource_spans:
                    resource = {
                        a.key: MessageToDict(a.value) for a in resource_spans.resource.attributes
                    }
                    service = resource.get("service.name", {}).get("stringValue")
                    for scope_spans in resource_spans.scope_spans:
                        receiver.spans.extend(
                            _span_dict(span, service) for span in scope_spans.spans
                        )
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        """Wait until at least ``count`` spans arrived; return them all."""
        deadline = time.monotonic() + timeout
        while len(self.spans) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.spans)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


def _span_dict(span: Any, service: str | None) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict  # noqa: PLC0415

    trace_id = span.trace_id.hex()
    kinds = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
    attributes = {}
    for attribute in span.attributes:
        kind = attribute.value.WhichOneof("value")
        value = getattr(attribute.value, kind) if kind else None
        attributes[attribute.key] = value if kind != "array_value" else MessageToDict(value)
    return {
        "service": service,
        "name": span.name,
        "kind": kinds.get(span.kind, str(span.kind)),
        "trace_id": f"1-{trace_id[:8]}-{trace_id[8:]}",
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex() or None,
        "attributes": attributes,
        "status": {0: "UNSET", 1: "OK", 2: "ERROR"}[span.status.code],
        "events": [event.name for event in span.events],
    }


NO_SAMPLING_RULES: dict[str, Any] = {
    "version": 2,
    "rules": [],
    "default": {"fixed_target": 0, "rate": 0.0},
}
"""Sampling rules that trace no request (a trusted caller's decision still counts)."""


def rules_file(directory: Path, rules: dict[str, Any], name: str = "sampling-rules.json") -> Path:
    """Write sampling ``rules`` to ``directory/name``, a file for ``XRAY_SAMPLING_RULES``."""
    path = directory / name
    path.write_text(json.dumps(rules))
    return path


def sample_all_rules() -> dict[str, Any]:
    """The project's sampling rules with every request sampled (health checks stay unsampled)."""
    rules = json.loads((ROOT / "servicekit/src/servicekit/sampling-rules.json").read_text())
    rules["default"] = {"fixed_target": 0, "rate": 1.0}
    return dict(rules)


@dataclass(frozen=True)
class SelfMadeCa:
    """A self-made certificate authority: its certificate (PEM file) and key."""

    cert_file: Path
    key: Any
    cert: Any

    @classmethod
    def create(cls, directory: Path, name: str) -> SelfMadeCa:
        import datetime  # noqa: PLC0415 - test helper only

        from cryptography import x509  # noqa: PLC0415
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
        from cryptography.x509.oid import NameOID  # noqa: PLC0415

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        cert_file = directory / f"{name}.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(cert_file, key, cert)

    def issue_server_cert(self, host_names: list[str]) -> tuple[bytes, bytes]:
        """A server certificate for ``host_names`` (DNS names or IP addresses) and its key, PEM."""
        import datetime  # noqa: PLC0415 - test helper only

        from cryptography import x509  # noqa: PLC0415
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([_san(name) for name in host_names]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _san(name: str) -> Any:
    import ipaddress  # noqa: PLC0415 - test helper only

    from cryptography import x509  # noqa: PLC0415

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


PASSWORD_LOGIN_GROUP = "password_login"
"""Members of this role must give their password (scram-sha-256); every other role is trusted."""


class PostgresServer:
    """A throwaway PostgreSQL server on a loopback port (the Debian server binaries).

    Runs as the ``postgres`` system user when started by root (PostgreSQL
    refuses to run as root); trust authentication for the role ``app`` and
    every other role except the members of :data:`PASSWORD_LOGIN_GROUP`.
    It accepts TLS too, with a certificate for the IP address 127.0.0.1 (the
    address of its URLs, not the name ``localhost``) issued by a self-made CA
    whose certificate is :attr:`ca_file`.
    """

    def __init__(self) -> None:
        import pwd  # noqa: PLC0415 - test helper only
        import shutil  # noqa: PLC0415
        import tempfile  # noqa: PLC0415

        found = shutil.which("initdb") or next(
            iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None
        )
        if found is None:
            msg = "no PostgreSQL server binaries (initdb)"
            raise FileNotFoundError(msg)
        self.bin = Path(found).resolve().parent
        self.root = Path(tempfile.mkdtemp(prefix="sbcntr-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.process: subprocess.Popen[bytes] | None = None
        self.databases = 0
        self.ca = SelfMadeCa.create(self.root / "ca", "sbcntr-test-ca")
        self.ca_file = self.ca.cert_file

    def _server_options(self) -> list[str]:
        """Write pg_hba.conf (and the TLS files); the server's extra ``-c`` options."""
        (self.data / "pg_hba.conf").write_text(
            f"host all +{PASSWORD_LOGIN_GROUP} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
            "local all all trust\n"
        )
        cert, key = self.root / "server.crt", self.root / "server.key"
        cert_pem, key_pem = self.ca.issue_server_cert(["127.0.0.1"])
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        key.chmod(0o600)
        if self.as_user:
            import pwd  # noqa: PLC0415 - test helper only

            owner = pwd.getpwnam("postgres")
            for path in (cert, key):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        return ["-c", "ssl=on", "-c", f"ssl_cert_file={cert}", "-c", f"ssl_key_file={key}"]

    def start(self) -> PostgresServer:
        subprocess.run(
            [
                *self.as_user,
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "app",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        options = self._server_options()
        log = (self.root / "server.log").open("wb")
        self.process = subprocess.Popen(
            [
                *self.as_user,
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                "fsync=off",
                *options,
            ],
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.psql("SELECT 1").returncode == 0:
                created = self.psql(f"CREATE ROLE {PASSWORD_LOGIN_GROUP} NOLOGIN")
                assert created.returncode == 0, created.stderr
                return self
            time.sleep(0.1)
        msg = f"PostgreSQL did not start: {(self.root / 'server.log').read_text()[-2000:]}"
        raise RuntimeError(msg)

    def psql(self, sql: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "app",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            capture_output=True,
            check=False,
        )

    def new_database(self) -> str:
        """A fresh, empty database; its ``postgresql://`` URL."""
        self.databases += 1
        name = f"sbcntr_{self.databases}"
        result = self.psql(f"CREATE DATABASE {name}")
        assert result.returncode == 0, result.stderr
        return f"postgresql://app@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.process is not None:
            subprocess.run(
                [
                    *self.as_user,
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ],
                capture_output=True,
                check=False,
                timeout=60,
            )
            self.process.wait(timeout=30)
        import shutil  # noqa: PLC0415

        shutil.rmtree(self.root, ignore_errors=True)
