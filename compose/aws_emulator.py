"""The local AWS emulator (docker compose only): one moto backend on two ports.

- ``MOTO_PORT`` (5000), plain HTTP: the AWS CLI, the X-Ray daemon, the set-up.
- ``MOTO_TLS_PORT`` (4443), HTTPS with a certificate made at start: the log
  router. Fluent Bit's ``cloudwatch_logs`` output speaks only TLS, so a plain
  HTTP emulator cannot receive its logs; the router's local configuration
  turns certificate verification off for this endpoint only.

Both ports serve the same in-memory state, so what the router sends over
HTTPS is read back over HTTP. ``MOTO_HOST`` is the address to bind (0.0.0.0
in a container). Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, generate_adhoc_ssl_context, make_server


def serve() -> None:
    host = os.environ.get("MOTO_HOST", "0.0.0.0")  # noqa: S104 - a container's service port
    port = int(os.environ.get("MOTO_PORT", "5000"))
    tls_port = int(os.environ.get("MOTO_TLS_PORT", "4443"))
    app = DomainDispatcherApplication(create_backend_app)
    servers: list[BaseWSGIServer] = [
        make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler),
        make_server(
            host,
            tls_port,
            app,
            threaded=True,
            request_handler=MotoRequestHandler,
            ssl_context=generate_adhoc_ssl_context(),
        ),
    ]
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    plain, tls = servers
    print(f"AWS emulator: http://{host}:{plain.port} and https://{host}:{tls.port}", flush=True)

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    for server in servers:
        server.shutdown()


if __name__ == "__main__":
    serve()
