"""How log lines reach stdout: the lines of a few milliseconds in one write, errors at
once, none lost at exit, and the access log's direct line equal to structlog's.

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


def test_lines_written_within_the_delay_are_one_write_in_order() -> None:
    lines, writes = _run(
        """
        import time
        import servicekit.logs
        servicekit.logs.FLUSH_DELAY_SECONDS = 0.2  # long enough to see the lines wait

        async def main():
            begun = time.monotonic()
            for n in range(100):
                log.info("line", n=n)  # one iteration: no await between them
            for n in range(100, 150):
                await asyncio.sleep(0)  # other iterations, within the delay
                log.info("line", n=n)
            on_time = time.monotonic() - begun < 0.15  # (a descheduled run proves nothing)
            await asyncio.sleep(0.01)
            if on_time and counting.writes:
                raise SystemExit(f"{counting.writes} writes before the delay ran out")
            await asyncio.sleep(0.4)
            if counting.writes != 1 and (on_time or counting.writes > 2):
                raise SystemExit(f"{counting.writes} writes once the delay ran out")
            log.info("line", n=150)  # the next line waits for a delay of its own
            await asyncio.sleep(0.4)
        asyncio.run(main())
        """
    )
    assert [line["n"] for line in lines] == list(range(151))
    assert 2 <= writes <= 3  # 3 only when the machine held the process past the delay


def test_a_line_waits_about_the_delay() -> None:
    lines, writes = _run(
        """
        import time
        from servicekit.logs import FLUSH_DELAY_SECONDS

        async def main():
            begun = time.monotonic()
            log.info("first")
            while not counting.writes:
                await asyncio.sleep(0.0005)
            waited = time.monotonic() - begun
            # A timer may run up to a clock tick early; a busy machine makes it late
            # (the bound only tells the delay from a line held until exit).
            if not FLUSH_DELAY_SECONDS - 0.002 <= waited <= 1:
                raise SystemExit(f"the line waited {waited * 1000:.1f} ms")
        asyncio.run(main())
        """
    )
    assert [line["event"] for line in lines] == ["first"]
    assert writes == 1


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


def test_a_long_burst_is_written_before_the_delay_ends() -> None:
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
    assert 2 <= writes <= 1000 // 256 + 2


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
