"""A client of Fluent Bit's forward protocol, sending records as FireLens does.

On ECS, and with Docker's ``fluentd`` log driver under compose, each line a
container writes to stdout becomes one record
``{"container_id", "container_name", "source", "log"}`` under the tag
``<container>-firelens-<task id>``; a line over 16 KiB arrives as several
records carrying ``partial_message``, ``partial_id``, ``partial_ordinal`` and
``partial_last`` (strings, as the driver sends them).

Messages are msgpack (Forward Protocol Specification v1): ``[tag, [[time,
record], ...], {"chunk": id}]``, time as the EventTime extension (type 0).
With a ``chunk`` option the router answers ``{"ack": id}`` once it holds the
records, which is how a test knows a record was accepted.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid
from typing import Any

import msgpack

# Docker's log driver splits lines at this size (daemon/logger/copier.go).
PARTIAL_SIZE = 16 * 1024


def event_time(seconds: float) -> msgpack.ExtType:
    whole = int(seconds)
    return msgpack.ExtType(0, struct.pack(">II", whole, int((seconds - whole) * 1e9)))


def container_records(container: str, line: str) -> list[dict[str, Any]]:
    """The records Docker's log driver makes of one stdout line (without its newline)."""
    base = {"container_id": "0" * 64, "container_name": f"/{container}", "source": "stdout"}
    if len(line.encode()) <= PARTIAL_SIZE:
        return [{**base, "log": line}]
    data = line.encode()
    assert data.isascii(), "split on bytes: keep the test line ASCII"
    pieces = [data[i : i + PARTIAL_SIZE].decode() for i in range(0, len(data), PARTIAL_SIZE)]
    partial_id = uuid.uuid4().hex * 2
    return [
        {
            **base,
            "log": piece,
            "partial_message": "true",
            "partial_id": partial_id,
            "partial_ordinal": str(ordinal),
            "partial_last": "true" if ordinal == len(pieces) else "false",
        }
        for ordinal, piece in enumerate(pieces, 1)
    ]


class ForwardClient:
    """One TCP connection to a forward input; every send waits for the router's ack."""

    def __init__(self, port: int, timeout: float = 10) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.unpacker = msgpack.Unpacker()

    def send(self, tag: str, records: list[dict[str, Any]], at: float | None = None) -> None:
        """Send ``records`` in one message; return once the router acknowledged them."""
        chunk = uuid.uuid4().hex
        now = time.time() if at is None else at
        entries = [[event_time(now), record] for record in records]
        self.sock.sendall(msgpack.packb([tag, entries, {"chunk": chunk}]))
        while True:
            data = self.sock.recv(4096)
            if not data:
                msg = "the router closed the connection before acknowledging"
                raise ConnectionError(msg)
            self.unpacker.feed(data)
            for answer in self.unpacker:
                assert answer == {"ack": chunk}, answer
                return

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> ForwardClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
