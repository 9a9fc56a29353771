"""How X-Ray segments reach the daemon: those that end in one turn of the event loop sent
back to back when the turn ends, one datagram each, in order; at once outside a loop;
none left waiting after the tracing's shutdown or at the process's exit.

A real UDP socket stands in for the daemon, and the segments are the SDK's own.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.core.models.segment import Segment

from servicekit import tracing_xray
from servicekit.tracing_xray import OrjsonUDPEmitter
from tests.support import ROOT


@pytest.fixture
def daemon() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


@pytest.fixture
def emitter(daemon: socket.socket) -> Iterator[OrjsonUDPEmitter]:
    host, port = daemon.getsockname()
    sender = OrjsonUDPEmitter(f"{host}:{port}")
    yield sender
    sender._socket.close()


def _segment(name: str, **annotations: str) -> Segment:
    segment = Segment(name)
    for key, value in annotations.items():
        segment.put_annotation(key, value)
    segment.close()
    return segment


def received(daemon: socket.socket, expected: int = 0) -> list[str]:
    """The names of the segments the daemon has been sent so far, in order.

    Waits up to 5 s for ``expected`` of them (loopback delivers a datagram
    in the sender's system call, but a loaded machine may defer it).
    """
    names: list[str] = []
    deadline = time.monotonic() + 5
    while True:
        try:
            datagram = daemon.recv(65536)
        except BlockingIOError:
            if len(names) >= expected or time.monotonic() > deadline:
                return names
            time.sleep(0.001)
            continue
        header, document = datagram.split(b"\n", 1)
        assert json.loads(header) == {"format": "json", "version": 1}
        names.append(json.loads(document)["name"])


def run(main: Callable[[], Awaitable[None]], loop: str = "asyncio") -> None:
    importlib.import_module(loop).run(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_segments_of_one_turn_are_sent_when_it_ends_in_order(
    loop: str, daemon: socket.socket, emitter: OrjsonUDPEmitter
) -> None:
    # On uvloop (the services' loop) as on asyncio's own.
    async def main() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith(loop)
        for n in range(5):
            emitter.send_entity(_segment(f"s{n}"))  # one turn: no await between them
        assert received(daemon) == []
        await asyncio.sleep(0)  # the loop's next turn sends them first
        assert received(daemon, 5) == [f"s{n}" for n in range(5)]
        emitter.send_entity(_segment("s5"))
        await asyncio.sleep(0)
        assert received(daemon, 1) == ["s5"]

    run(main, loop)


def test_no_timer_is_scheduled_to_send_segments(
    daemon: socket.socket, emitter: OrjsonUDPEmitter
) -> None:
    # A timer re-armed every few milliseconds made every request of a loaded
    # service slower (docs/performance.md, round 8).
    async def main() -> None:
        loop: Any = asyncio.get_running_loop()

        def no_timer(*args: object, **kwargs: object) -> None:
            raise AssertionError("a timer was scheduled")

        loop.call_later = loop.call_at = no_timer
        emitter.send_entity(_segment("a"))
        await asyncio.sleep(0)
        assert received(daemon, 1) == ["a"]

    run(main)


def test_a_segment_outside_a_running_loop_is_sent_at_once(
    daemon: socket.socket, emitter: OrjsonUDPEmitter
) -> None:
    emitter.send_entity(_segment("a"))
    assert received(daemon, 1) == ["a"]


def test_a_segment_from_another_thread_is_sent_at_once_after_what_waits(
    daemon: socket.socket, emitter: OrjsonUDPEmitter
) -> None:
    # A segment a worker thread ends while the loop runs (no loop in that thread).
    async def main() -> None:
        emitter.send_entity(_segment("loop"))
        worker = threading.Thread(target=emitter.send_entity, args=(_segment("thread"),))
        worker.start()
        worker.join()
        assert received(daemon, 2) == ["loop", "thread"]

    run(main)


def test_segments_still_waiting_at_exit_are_sent(daemon: socket.socket) -> None:
    host, port = daemon.getsockname()
    script = f"""
import asyncio
from aws_xray_sdk.core.models.segment import Segment
from servicekit.tracing_xray import OrjsonUDPEmitter
from tests.support import ROOT

emitter = OrjsonUDPEmitter("{host}:{port}")
loop = asyncio.new_event_loop()
def stop_with_a_send_scheduled():
    segment = Segment("last")
    segment.close()
    emitter.send_entity(segment)
    loop.stop()
loop.call_soon(stop_with_a_send_scheduled)
loop.run_forever()
"""
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=60)
    assert received(daemon, 1) == ["last"]


def test_a_loop_after_one_that_stopped_with_a_send_scheduled_schedules_its_own(
    daemon: socket.socket, emitter: OrjsonUDPEmitter
) -> None:
    first = asyncio.new_event_loop()

    def stop_with_a_send_scheduled() -> None:
        emitter.send_entity(_segment("a"))
        first.stop()

    first.call_soon(stop_with_a_send_scheduled)
    first.run_forever()
    first.close()
    assert received(daemon) == []

    async def main() -> None:
        emitter.send_entity(_segment("b"))
        await asyncio.sleep(0)
        assert received(daemon, 2) == ["a", "b"]

    run(main)


def test_past_the_cap_what_waits_is_sent_before_the_turn_ends(
    daemon: socket.socket, emitter: OrjsonUDPEmitter
) -> None:
    cap = OrjsonUDPEmitter._WAITING_MAX

    async def main() -> None:
        for n in range(cap + 1):
            emitter.send_entity(_segment(f"s{n}"))
        assert received(daemon, cap) == [f"s{n}" for n in range(cap)]
        await asyncio.sleep(0)
        assert received(daemon, 1) == [f"s{cap}"]

    run(main)


def test_a_datagram_the_kernel_refuses_is_logged_and_the_others_are_sent(
    daemon: socket.socket, emitter: OrjsonUDPEmitter, capsys: pytest.CaptureFixture[str]
) -> None:
    too_big = _segment("too big", padding="x" * 70_000)  # over UDP's 65,507 bytes

    async def main() -> None:
        emitter.send_entity(_segment("a"))
        emitter.send_entity(too_big)
        emitter.send_entity(_segment("b"))
        await asyncio.sleep(0)
        assert received(daemon, 2) == ["a", "b"]

    run(main)
    assert "Failed to send entity to the X-Ray daemon" in capsys.readouterr().out


def test_the_tracing_shutdown_sends_what_waits(
    daemon: socket.socket, emitter: OrjsonUDPEmitter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lifespan's shutdown runs inside the loop's turn, after the last requests.
    monkeypatch.setattr(xray_recorder, "emitter", emitter)

    async def main() -> None:
        emitter.send_entity(_segment("last"))
        tracing_xray.shutdown()
        assert received(daemon, 1) == ["last"]

    run(main)
