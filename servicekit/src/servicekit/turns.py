"""What a service hands on at the end of the event loop's turn, gathered over the turn.

:class:`EndOfTurn` gathers byte strings and hands them on together once the
running event loop has run what was ready when the first of them came: the
log writer (:mod:`servicekit.logs`: the lines of a turn in one ``write``) and
the X-Ray SDK's emitter (:mod:`servicekit.tracing_xray`: the segments of a
turn sent back to back) use it. The contract:

* inside a running event loop, :meth:`EndOfTurn.add` keeps the item and
  schedules :meth:`EndOfTurn.flush` with ``call_soon``, once per turn. No
  timer: a timer re-armed every few milliseconds made every request of a
  loaded service slower (docs/performance.md, round 8);
* outside a running loop (another thread, a script, the interpreter's exit),
  ``add`` hands on what waits and then the item, at once; so does
  :meth:`EndOfTurn.now`, for what must not wait (an error line);
* once ``cap`` items wait, they are handed on at once (the scheduled flush
  still comes, for what follows);
* what waits is taken item by item from a deque, whose appends and pops are
  atomic: a thread handing on its item at once and the loop's flush each
  take items the other did not, with no lock for a signal handler to wait
  on. The items of each thread keep their order;
* at the interpreter's exit what still waits is handed on, and a forked
  child forgets its parent's items (it would hand them on a second time).
  A process that ends with ``os._exit`` or is killed loses what waits.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import weakref
from collections import deque
from collections.abc import Callable

_every: weakref.WeakSet[EndOfTurn] = weakref.WeakSet()


class EndOfTurn:
    """Byte strings handed to ``out`` together at the end of the loop's turn (see the module)."""

    __slots__ = ("__weakref__", "_cap", "_out", "_scheduled_on", "_waiting")

    def __init__(self, out: Callable[[list[bytes]], None], cap: int) -> None:
        self._out = out
        self._cap = cap
        self._waiting: deque[bytes] = deque()
        # The loop whose next turn will flush (None: no flush is scheduled).
        self._scheduled_on: asyncio.AbstractEventLoop | None = None
        _every.add(self)

    def add(self, item: bytes) -> None:
        """Hand ``item`` on at the end of the running loop's turn; at once outside a loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop runs in this thread: now, after what waits
            self.now(item)
            return
        waiting = self._waiting
        waiting.append(item)
        if len(waiting) >= self._cap:
            self._out(self._take())
        elif self._scheduled_on is not loop:
            # (A loop that closed with a flush scheduled never ran it: the
            # next loop schedules its own.)
            self._scheduled_on = loop
            loop.call_soon(self.flush)

    def now(self, item: bytes) -> None:
        """Hand on what waits and then ``item``, at once."""
        self._out([*self._take(), item])

    def flush(self) -> None:
        """Hand on what waits (nothing: nothing is called)."""
        self._scheduled_on = None
        items = self._take()
        if items:
            self._out(items)

    def _take(self) -> list[bytes]:
        items = []
        waiting = self._waiting
        try:
            while True:
                items.append(waiting.popleft())
        except IndexError:
            return items

    def _forget(self) -> None:
        self._waiting.clear()
        self._scheduled_on = None


def _flush_every() -> None:
    for gathered in list(_every):
        gathered.flush()


def _forget_every_in_child() -> None:
    for gathered in list(_every):
        gathered._forget()


atexit.register(_flush_every)
os.register_at_fork(after_in_child=_forget_every_in_child)
