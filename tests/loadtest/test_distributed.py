"""A distributed run across hosts: a Locust master, two workers and the services,
each in a network namespace of its own on a private test subnet (tests/netns.py).

The run must mean what a single run means: the shape on the master sets the
cluster's rate, the master's verdict and reports hold every worker's
requests, the audit of the services' logs finds no gap, and a worker lost
mid-run fails the run instead of under-delivering silently.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.netns import Host, hosts, unavailable
from tests.support import ROOT, base_env, migrate_database, sqlite_url, stop_process

BIN = Path(sys.executable).parent
RATE = 40.0  # req/s asked of the cluster: 80 users at 0.5 req/s, split over two workers
SECONDS = 10
MASTER_PORT = 5557

WAIT_READY = """
import sys, time, httpx
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        if httpx.get(sys.argv[1], timeout=1).status_code == 200:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    time.sleep(0.1)
sys.exit(1)
"""

pytestmark = pytest.mark.skipif(
    unavailable() is not None, reason=f"no network namespaces here: {unavailable()}"
)


@dataclass
class Cluster:
    hosts: dict[str, Host]
    workdir: Path
    frontend_log: Path
    backend_log: Path

    @property
    def target(self) -> str:
        return f"http://{self.hosts['services'].address}:8080"

    def master(self, run_id: str, *extra: str) -> subprocess.Popen[str]:
        """The master, headless, waiting for two workers; its output is piped."""
        return self.hosts["master"].popen(
            *(str(BIN / "locust"), "-f", str(ROOT / "loadtest"), "--master", "--headless"),
            *("--master-bind-host", self.hosts["master"].address, "--expect-workers", "2"),
            *("--host", self.target, "--run-id", run_id, "--shape", "steady"),
            *("--target-rps", str(RATE), "--shape-duration", str(SECONDS)),
            *("--report-dir", str(self.workdir / run_id), "--only-summary", *extra),
            # the services' latency on a machine shared with other work is not what
            # this run checks (tests/loadtest/test_smoke.py uses the same limits)
            *("--max-p95-ms", "1000", "--max-p99-ms", "2000"),
            *("--min-rps", str(RATE * 0.95)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=base_env(),
        )

    def worker(self, name: str) -> subprocess.Popen[str]:
        """A worker given nothing but its master: the run's options come from the master."""
        return self.hosts[name].popen(
            *(str(BIN / "locust"), "-f", str(ROOT / "loadtest"), "--worker"),
            *("--master-host", self.hosts["master"].address, "--master-port", str(MASTER_PORT)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=base_env(),
        )


def _start(host: Host, name: str, workdir: Path, log: Path, **env: str) -> subprocess.Popen[Any]:
    with log.open("wb") as out:
        return host.popen(
            sys.executable,
            "-m",
            name,
            cwd=workdir,
            # Clients name the services by the test subnet's address.
            env=base_env(
                HOST=host.address,
                ALLOWED_HOSTS=host.address,
                AWS_XRAY_SDK_ENABLED="false",
                **env,
            ),
            stdout=out,
            stderr=subprocess.DEVNULL,
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("distributed")
    database = sqlite_url(workdir / "stack.sqlite3")
    migrate_database(workdir, base_env(DATABASE_URL=database))
    with hosts("services", "master", "worker1", "worker2") as found:
        services = found["services"]
        front_log, back_log = workdir / "frontend.log", workdir / "backend.log"
        backend = _start(services, "backend", workdir, back_log, PORT="8081", DATABASE_URL=database)
        frontend = _start(
            services,
            "frontend",
            workdir,
            front_log,
            PORT="8080",
            BACKEND_URL=f"http://{services.address}:8081",
        )
        try:
            cluster = Cluster(found, workdir, front_log, back_log)
            ready = found["master"].run(
                sys.executable, "-c", WAIT_READY, f"{cluster.target}/readyz"
            )
            assert ready.returncode == 0, "the services did not answer from the master's host"
            yield cluster
        finally:
            for process in (frontend, backend):
                stop_process(process, signal.SIGTERM, timeout=30)


def _finish(master: subprocess.Popen[str], workers: list[subprocess.Popen[str]]) -> str:
    try:
        output, _ = master.communicate(timeout=SECONDS + 90)
    finally:
        for worker in workers:
            stop_process(worker, signal.SIGTERM, timeout=30)
    return output


def _audit(cluster: Cluster, run_id: str) -> subprocess.CompletedProcess[str]:
    """The STEP3 audit of the run, polled: the services write an access line as the
    answer goes out, so the last lines may land just after the master's verdict."""
    deadline = time.monotonic() + 10
    while True:
        audit = subprocess.run(
            [
                *(str(BIN / "sbcntrctl"), "audit", "--run-id", run_id),
                *("--stats", str(cluster.workdir / run_id / "summary.json")),
                *("--frontend-log", str(cluster.frontend_log)),
                *("--backend-log", str(cluster.backend_log)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if audit.returncode == 0 or time.monotonic() > deadline:
            return audit
        time.sleep(0.2)


def test_the_cluster_delivers_the_asked_rate_and_the_audit_passes(cluster: Cluster) -> None:
    master = cluster.master("cluster-1")
    workers = [cluster.worker("worker1"), cluster.worker("worker2")]
    output = _finish(master, workers)
    assert master.returncode == 0, output[-5000:]
    summary = json.loads((cluster.workdir / "cluster-1" / "summary.json").read_text())
    print(next(line for line in output.splitlines() if line.startswith("run cluster-1:")))
    assert RATE * 0.95 <= summary["rps"] <= RATE * 1.05, output[-3000:]
    assert summary["workers"] == 2
    assert [g["lost"] for g in summary["generators"]] == [False, False]
    assert all(g["cpu_percent"] > 0 for g in summary["generators"])
    (phase,) = (cluster.workdir / "cluster-1" / "steps.csv").read_text().splitlines()[1:]
    measured = float(phase.split(",")[8])  # the rps column: from both workers' requests
    print(f"steps.csv: {measured:.2f} req/s in the measured part of the phase")
    assert RATE * 0.95 <= measured <= RATE * 1.05
    # the services' logs hold exactly the requests the master counted
    audit = _audit(cluster, "cluster-1")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert f"Locust sent {summary['requests']} requests" in audit.stdout


def test_a_worker_killed_mid_run_fails_the_run(cluster: Cluster) -> None:
    master = cluster.master("cluster-2")
    workers = [cluster.worker("worker1"), cluster.worker("worker2")]
    assert master.stdout is not None
    for line in master.stdout:  # the run has started once every user is spawned
        if "All users spawned" in line:
            break
    time.sleep(SECONDS / 3)
    workers[1].kill()
    output = _finish(master, workers)
    assert master.returncode == 1, output[-5000:]
    assert "THRESHOLD MISSED: worker " in output
    summary = json.loads((cluster.workdir / "cluster-2" / "summary.json").read_text())
    assert sorted(g["lost"] for g in summary["generators"]) == [False, True]
    assert any("lost" in problem for problem in summary["missed"])
