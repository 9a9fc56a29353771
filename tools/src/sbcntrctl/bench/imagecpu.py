"""Start-up CPU and health-check CPU of a service, measured inside its image.

Standard library only, so that the image's own interpreter runs it, as the
container runs (read-only root, no bytecode written)::

    docker run --rm -i --read-only --tmpfs /tmp --network none --entrypoint python \\
        sbcntr-backend:local - backend < tools/src/sbcntrctl/bench/imagecpu.py

Arguments: the service (``backend`` or ``frontend``), then optionally the
number of runs (5) and of health checks per run (10). The backend's database
is migrated once first. For each run it starts ``python -m SERVICE``, takes
the CPU time (user + system, from ``/proc/<pid>/stat``) the process has used
when ``/readyz`` first answers
200, runs the image's health check ``python -m servicekit.healthcheck``
against it (CPU from ``getrusage(RUSAGE_CHILDREN)`` around the checks), then
stops the service with SIGTERM. Prints one JSON line with the medians;
docs/performance.md has the figures.
"""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

RUNS = 5
CHECKS_PER_RUN = 10
READY_TIMEOUT_SECONDS = 60.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by a running process."""
    with open(f"/proc/{pid}/stat") as stat:  # noqa: PTH123 - the image's Python, no pathlib import cost
        fields = stat.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5) (utime, stime), counted after the ")" that ends the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def answers_200(port: int, path: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            return conn.recv(64).split(b" ", 2)[1:2] == [b"200"]
    except OSError:
        return False


def children_cpu() -> float:
    import resource  # noqa: PLC0415 - not on the measured processes' path

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(service: str, port: int, checks: int) -> tuple[float, float]:
    """(start-up CPU seconds, mean CPU seconds of one health check)."""
    server = subprocess.Popen(
        [sys.executable, "-m", service], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not answers_200(port, "/readyz"):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{service} did not become ready (exit status {server.poll()})")
            time.sleep(0.02)
        startup = cpu_seconds(server.pid)
        before = children_cpu()
        for _ in range(checks):
            check = subprocess.run([sys.executable, "-m", "servicekit.healthcheck"], check=False)
            if check.returncode != 0:
                raise SystemExit("the health check failed against a ready service")
        check_cpu = (children_cpu() - before) / checks
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return startup, check_cpu


def main() -> None:
    service = sys.argv[1] if len(sys.argv) > 1 else "backend"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else RUNS
    checks = int(sys.argv[3]) if len(sys.argv) > 3 else CHECKS_PER_RUN
    port = int(os.environ.get("PORT", "8080"))
    if service == "backend":
        # The schema first, as every deployment does: the backend is ready only then.
        subprocess.run(
            [sys.executable, "-m", "backend", "migrate"], check=True, stdout=subprocess.DEVNULL
        )
    results = [one_run(service, port, checks) for _ in range(runs)]
    print(
        json.dumps(
            {
                "service": service,
                "python": sys.version.split()[0],
                "runs": runs,
                "checks_per_run": checks,
                "startup_cpu_seconds": round(statistics.median(r[0] for r in results), 3),
                "healthcheck_cpu_seconds": round(statistics.median(r[1] for r in results), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
