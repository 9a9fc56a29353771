"""``python -m servicekit.healthcheck``: the container health check.

Exits 0 when ``GET http://127.0.0.1:$PORT/healthz`` answers 200 within the
timeout, 1 otherwise. Slim images carry no curl; this needs only the
standard library. Liveness, not readiness: an unreachable database must not
make the orchestrator replace a task that is otherwise healthy.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 2.0


def check(port: int, path: str = "/healthz") -> bool:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main() -> int:
    port = int(os.environ.get("PORT", "8080"))
    path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
    return 0 if check(port, path) else 1


if __name__ == "__main__":
    raise SystemExit(main())
