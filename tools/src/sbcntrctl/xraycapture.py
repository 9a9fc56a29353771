"""``sbcntrctl xray-capture``: the X-Ray daemon's place on a workstation, writing what it receives.

The services send each segment document over UDP to
``AWS_XRAY_DAEMON_ADDRESS`` (default ``127.0.0.1:2000``) as
``{"format":"json","version":1}\\n<segment JSON>``. This command listens
there and writes each document as one JSON line to ``--out`` (what
``sbcntrctl audit --segments`` reads), flushed as it arrives. SIGTERM or
SIGINT stops it after it has written every datagram already received.
Datagrams that are not segment documents are counted in the last line it
prints, never written. Nothing is sent to AWS.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import TextIO

HEADER = {"format": "json", "version": 1}
MAX_DATAGRAM = 65535
# Room for bursts between reads (the kernel caps it at net.core.rmem_max).
RECEIVE_BUFFER = 4 * 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=2000, help="UDP port on 127.0.0.1 (0: any free port)"
    )
    parser.add_argument("--out", type=Path, required=True, help="file to append JSON lines to")


def segment_of(datagram: bytes) -> str | None:
    """The segment document of a daemon datagram as one JSON line, or None if it is not one."""
    header, newline, body = datagram.partition(b"\n")
    try:
        if not newline or json.loads(header) != HEADER:
            return None
        document = json.loads(body)
    except ValueError:
        return None
    return json.dumps(document, separators=(",", ":")) if isinstance(document, dict) else None


class Capture:
    def __init__(self, sock: socket.socket, out: TextIO) -> None:
        self.sock = sock
        self.out = out
        self.written = 0
        self.refused = 0
        self.stopping = False

    def stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def receive_ready(self, timeout: float | None) -> bool:
        """Write every datagram waiting; False when none came within ``timeout``."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return False
        while True:
            try:
                datagram = self.sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                break
            line = segment_of(datagram)
            if line is None:
                self.refused += 1
                continue
            self.out.write(line + "\n")
            self.written += 1
        self.out.flush()
        return True

    def run(self) -> None:
        while not self.stopping:
            try:
                self.receive_ready(0.2)
            except InterruptedError:  # a signal arrived during select
                continue
        while self.receive_ready(0):  # what arrived before the signal
            pass


def daemon_socket(port: int) -> socket.socket:
    """A UDP socket bound to 127.0.0.1:``port`` (0: any free port), as the daemon's.

    Its receive buffer is ``RECEIVE_BUFFER``; OSError (the socket closed) when
    the port cannot be bound.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def run(args: argparse.Namespace) -> int:
    try:
        sock = daemon_socket(args.port)
    except OSError as exc:
        print(
            f"sbcntrctl xray-capture: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    sock.setblocking(False)
    port = sock.getsockname()[1]
    try:
        out_file = args.out.open("a")
    except OSError as exc:
        sock.close()
        print(f"sbcntrctl xray-capture: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    with sock, out_file as out:
        capture = Capture(sock, out)
        signal.signal(signal.SIGTERM, capture.stop)
        signal.signal(signal.SIGINT, capture.stop)
        print(
            f"xray-capture: listening on 127.0.0.1:{port} (UDP), writing to {args.out}; "
            f"start the services with AWS_XRAY_DAEMON_ADDRESS=127.0.0.1:{port}",
            flush=True,
        )
        capture.run()
    print(
        f"xray-capture: {capture.written} segment documents written to {args.out}, "
        f"{capture.refused} datagrams refused (not segment documents)",
        flush=True,
    )
    return 0
