"""Fair turns at the processor for every training in the process.

A room of attendees presses Start within a minute. First-come-first-served with two slots made the
eighth attendee wait three minutes before their curve moved. Here every training takes turns of
about ``slice_s`` seconds: a job computes while it holds a turn and hands it on between batches
when someone is waiting. At most ``slots`` jobs compute at the same moment, which keeps a core for
the web server. Jobs that have never had a turn go first, in the order they were started, so every
curve shows its first point soon; after that, turns go round in order. New runs never starve the runs
in progress: after ``FRESH_STREAK`` first turns in a row, a run in progress that waits has the next
turn (a loop of Start and Stop from many tabs cannot hold back everyone else's training).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

FRESH_STREAK = 2  # first turns given in a row while a run in progress waits


class FairScheduler:
    """Round-robin turns of ``slice_s`` seconds over ``slots`` compute places, first come first served."""

    def __init__(self, slots: int = 1, slice_s: float = 1.0):
        if slots < 1:
            raise ValueError("At least one training must be able to compute.")
        self.slots = slots
        self.slice_s = slice_s
        self._cond = threading.Condition()
        self._fresh: deque[str] = deque()  # waiting for their first turn, in the order they arrived
        self._returning: deque[str] = deque()  # had turns before, waiting for the next
        self._computing: dict[str, float] = {}  # ticket → when its turn began
        self._first: set[str] = set()  # computing their first turn, not yet at their first batch
        self._build_s = 3.0  # running mean time from a first turn's start to its first batch (building, tracing)
        self._streak = 0  # first turns given in a row while runs in progress waited

    def acquire(self, ticket: str, cancelled: Callable[[], bool] = lambda: False, first: bool = False) -> bool:
        """Wait for a turn; False (and out of the line) when ``cancelled()`` becomes true first."""
        with self._cond:
            line = self._fresh if first else self._returning
            line.append(ticket)
            while True:
                if cancelled():
                    line.remove(ticket)
                    self._cond.notify_all()
                    return False
                if self._next_in_line() == ticket and len(self._computing) < self.slots:
                    line.popleft()
                    self._streak = self._streak + 1 if first and self._returning else 0
                    self._computing[ticket] = time.monotonic()
                    if first:
                        self._first.add(ticket)
                    self._cond.notify_all()
                    return True
                self._cond.wait(0.25)

    def set_slots(self, slots: int) -> None:
        """Change how many compute at once (turns already running end as usual)."""
        with self._cond:
            self.slots = max(1, slots)
            self._cond.notify_all()

    def _next_in_line(self) -> str | None:
        if self._fresh and not (self._returning and self._streak >= FRESH_STREAK):
            return self._fresh[0]
        return self._returning[0] if self._returning else None

    def release(self, ticket: str) -> float:
        """End a turn; returns its length in seconds."""
        with self._cond:
            began = self._computing.pop(ticket, None)
            length = 0.0 if began is None else time.monotonic() - began
            self._first.discard(ticket)  # ended before its first batch (stopped, failed): not a build time
            self._cond.notify_all()
        return length

    def turn_is_over(self, ticket: str) -> bool:
        """True when the turn has lasted its slice and somebody else is waiting (asked between batches)."""
        now = time.monotonic()
        with self._cond:
            began = self._computing.get(ticket)
            if ticket in self._first and began is not None:  # its first batch is done: the build is over
                self._first.discard(ticket)
                self._build_s = 0.7 * self._build_s + 0.3 * (now - began)
            waiting = bool(self._fresh or self._returning)
        return began is not None and waiting and now - began >= self.slice_s

    def place(self, ticket: str) -> int | None:
        """1-based place among those waiting for a first turn, or None."""
        with self._cond:
            return self._fresh.index(ticket) + 1 if ticket in self._fresh else None

    def first_turn_wait_s(self, ticket: str) -> float | None:
        """About how long until this waiting job shows its first batch.

        The turns being computed end (a first turn lasts its build or a slice, whichever is longer); those
        ahead of it take their first turns, ``slots`` at a time; then it builds its own model.
        """
        place = self.place(ticket)
        if place is None:
            return None
        now = time.monotonic()
        with self._cond:
            build = self._build_s
            turn = max(build, self.slice_s)
            left = sorted(max(0.0, (turn if other in self._first else self.slice_s) - (now - began))
                          for other, began in self._computing.items())  # fmt: skip
            # Runs in progress take a turn after every FRESH_STREAK first turns while they wait.
            between = min(len(self._returning), (place - 1) // FRESH_STREAK) * self.slice_s
        free_slot = left[0] if len(left) >= self.slots else 0.0  # the first compute place to come free
        return free_slot + math.ceil((place - 1) / self.slots) * turn + between / self.slots + build

    def waiting_count(self) -> int:
        with self._cond:
            return len(self._fresh) + len(self._returning)

    def computing_count(self) -> int:
        with self._cond:
            return len(self._computing)

    def share(self, active: int) -> float:
        """The part of the time one of ``active`` turning jobs computes."""
        return min(1.0, self.slots / max(1, active))
