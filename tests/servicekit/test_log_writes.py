"""How log lines reach stdout: the lines of one turn of the event loop in one write, errors
at once, none lost at exit, and the access log's direct line equal to structlog's.

Each loop case runs a real Python process whose stdout is a pipe (as under ECS)
and counts the ``write`` calls its stdout received with a recording wrapper
around the real file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import pytest

from servicekit import logs
from servicekit.logs import (
    configure_logging,
    get_logger,
    level_enabled,
    request_id_var,
    trace_id_var,
    write_event,
)
from tests.support import ROOT

_PRELUDE = """
import asyncio, io, os, sys, threading
from servicekit.logs import configure_logging, get_logger

class Counting(io.RawIOBase):
    # The real stdout, counting the writes it receives (written to stderr at exit).
    def __init__(self):
        self.raw = io.FileIO(1, "w", closefd=False)
        self.writes = 0
    def writable(self):
        return True
    def write(self, data):
        self.writes += 1
        return self.raw.write(data)

counting = Counting()
sys.stdout = io.TextIOWrapper(counting, write_through=True)
import atexit
atexit.register(lambda: print(counting.writes, file=sys.stderr))
configure_logging("sample", "INFO")
log = get_logger("sample")
"""


def _run(body: str) -> tuple[list[dict[str, object]], int]:
    """(the JSON lines the process wrote, how many writes its stdout received)."""
    script = _PRELUDE + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return lines, int(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_lines_of_one_turn_of_the_loop_are_one_write_in_order(loop: str) -> None:
    # On uvloop (the services' loop) as on asyncio's own.
    lines, writes = _run(
        f"""
        import {loop}

        async def main():
            if not type(asyncio.get_running_loop()).__module__.startswith("{loop}"):
                raise SystemExit("not the loop asked for")
            for n in range(100):
                log.info("line", n=n)  # one turn of the loop: no await between them
            if counting.writes:
                raise SystemExit(f"{{counting.writes}} writes before the turn ended")
            await asyncio.sleep(0)  # the loop's next turn runs the write first
            if counting.writes != 1:
                raise SystemExit(f"{{counting.writes}} writes after the turn")
            for n in range(100, 110):
                log.info("line", n=n)  # each turn's line: a write of its own
                await asyncio.sleep(0)
            if counting.writes != 11:
                raise SystemExit(f"{{counting.writes}} writes after eleven turns")
        {loop}.run(main())
        """
    )
    assert [line["n"] for line in lines] == list(range(110))
    assert writes == 11


def test_a_loop_after_one_that_stopped_with_a_write_scheduled_schedules_its_own() -> None:
    lines, writes = _run(
        """
        first = asyncio.new_event_loop()
        def stop_with_a_write_scheduled():
            log.info("a")
            first.stop()
        first.call_soon(stop_with_a_write_scheduled)
        first.run_forever()
        first.close()

        async def main():
            log.info("b")
            await asyncio.sleep(0)
            if counting.writes != 1:
                raise SystemExit(f"{counting.writes} writes after the second loop's turn")
        asyncio.run(main())
        """
    )
    assert [line["event"] for line in lines] == ["a", "b"]
    assert writes == 1


def test_no_timer_is_scheduled_to_write_lines() -> None:
    # A write scheduled with call_later every few milliseconds made every
    # request of a loaded service slower (docs/performance.md, round 8).
    lines, writes = _run(
        """
        async def main():
            loop = asyncio.get_running_loop()
            def no_timer(*args, **kwargs):
                raise SystemExit("a timer was scheduled")
            loop.call_later = loop.call_at = no_timer
            for n in range(3):
                log.info("line", n=n)
                await asyncio.sleep(0)
        asyncio.run(main())
        """
    )
    assert [line["n"] for line in lines] == [0, 1, 2]
    assert writes == 3


def test_an_error_line_is_written_at_once_after_what_waits() -> None:
    lines, writes = _run(
        """
        import logging
        from servicekit.logs import write_event

        async def main():
            log.info("one"); log.warning("two")
            log.error("three")  # what waits, then the error: one write, now
            after_structlog = counting.writes
            log.info("four")
            logging.getLogger("library").error("five")
            after_stdlib = counting.writes
            write_event("servicekit.access", "six", "error", {"status": 500})
            after_fast_line = counting.writes
            log.critical("seven")
            if (after_structlog, after_stdlib, after_fast_line, counting.writes) != (1, 2, 3, 4):
                raise SystemExit(
                    f"writes: {after_structlog} {after_stdlib} {after_fast_line} {counting.writes}"
                )
            log.info("eight")
            await asyncio.sleep(0.05)
        asyncio.run(main())
        """
    )
    assert [line["event"] for line in lines] == [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
    ]
    assert writes == 5


def test_lines_outside_a_loop_write_what_waits_first_and_at_once() -> None:
    lines, writes = _run(
        """
        loop = asyncio.new_event_loop()
        def inside():
            log.info("in the loop")
            loop.stop()  # the loop stops before its scheduled write runs
        loop.call_soon(inside)
        loop.run_forever()
        loop.close()
        log.info("after the loop")  # no loop: what waits, then this, one write
        def other_thread():
            log.info("from a thread")
        t = threading.Thread(target=other_thread)
        t.start(); t.join()
        """
    )
    assert [line["event"] for line in lines] == ["in the loop", "after the loop", "from a thread"]
    assert writes == 2


def test_lines_still_waiting_at_exit_are_written() -> None:
    lines, _ = _run(
        """
        loop = asyncio.new_event_loop()
        def last_words():
            log.info("one"); log.warning("two")
            loop.stop()
        loop.call_soon(last_words)
        loop.run_forever()
        # exits here, the loop's scheduled write never run
        """
    )
    assert [line["event"] for line in lines] == ["one", "two"]


def test_a_long_burst_is_written_before_the_turn_ends() -> None:
    # The waiting lines are bounded: a burst is written in chunks as it grows.
    lines, writes = _run(
        """
        async def main():
            for n in range(1000):
                log.info("line", n=n)
            await asyncio.sleep(0.01)
        asyncio.run(main())
        """
    )
    assert [line["n"] for line in lines] == list(range(1000))
    assert writes == 1000 // 256 + 1  # three of 256 while it grows, the rest at the turn's end


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_the_fast_access_line_is_the_line_structlog_writes(
    level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fields = {"method": "GET", "path": "/v1/items", "status": 200, "duration_ms": 1.25}
    configure_logging("sample", "DEBUG")
    request_token = request_id_var.set("req-1")
    trace_token = trace_id_var.set("1-5759e988-bd862e3fe1be46a994272793")
    try:
        getattr(get_logger("servicekit.access"), level)("request", **fields)
        write_event("servicekit.access", "request", level, fields)
    finally:
        request_id_var.reset(request_token)
        trace_id_var.reset(trace_token)
    structlog_line, fast_line = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert structlog_line.pop("timestamp") <= fast_line.pop("timestamp")
    assert list(fast_line.items()) == list(structlog_line.items())  # same fields, same order


def test_the_fast_line_follows_the_configured_level() -> None:
    configure_logging("sample", "WARNING")
    assert [level_enabled(name) for name in ("debug", "info", "warning", "error")] == [
        False,
        False,
        True,
        True,
    ]
    configure_logging("sample", "INFO")
    assert level_enabled("info")


@pytest.mark.parametrize(
    "nanoseconds",
    [0, 1_796_450_239_421_000_000, 1_796_450_239_999_999_999, 1_796_450_240_000_000_001],
)
def test_timestamps_are_iso_8601_utc_milliseconds(
    nanoseconds: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs.time, "time_ns", lambda: nanoseconds)
    moment = datetime.fromtimestamp(nanoseconds // 1_000_000 / 1000, UTC)
    expected = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert logs._Clock.now() == expected


def test_a_forked_child_does_not_write_its_parents_waiting_lines() -> None:
    lines, _ = _run(
        """
        async def main():
            log.info("parent, before the fork")  # waiting when the process forks
            pid = os.fork()
            if pid == 0:
                log.info("child")
                sys.exit(0)  # a normal exit: the child writes what waits in it
            os.waitpid(pid, 0)
            await asyncio.sleep(0.05)
        asyncio.run(main())
        """
    )
    assert sorted(line["event"] for line in lines) == ["child", "parent, before the fork"]
