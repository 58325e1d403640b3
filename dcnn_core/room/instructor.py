"""The instructor's key: long enough to resist guessing, and guesses throttled for the whole server.

A key shorter than ``MIN_KEY_LENGTH`` is refused when the server starts (the room view is then off and
the log says why). Wrong guesses, from any browser, make the next guess wait: one second after the
first, doubling up to ``MAX_DELAY_S``. Every wrong guess is logged (never the guess itself); a right
key resets the count.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass

MIN_KEY_LENGTH = 12
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 60.0

log = logging.getLogger(__name__)


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot unlock the room view (None when it can, or when no key is set)."""
    if key and len(key) < MIN_KEY_LENGTH:
        return (f"DCNN_INSTRUCTOR_KEY has {len(key)} characters, fewer than {MIN_KEY_LENGTH}: the room view is off. "
                "Set a longer key, e.g. python -c \"import secrets; print(secrets.token_urlsafe(16))\".")  # fmt: skip
    return None


@dataclass(frozen=True)
class Verdict:
    """The answer to one guess: whether it opened the room view, and a sentence for the person otherwise."""

    unlocked: bool
    message: str = ""


class KeyGuard:
    """Checks guesses of the instructor key for the whole server, with a growing wait after wrong ones."""

    def __init__(self, key: str, clock=time.monotonic):
        self.key = key
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._next_allowed = 0.0

    def wait_s(self) -> float:
        """Seconds until the next guess is heard."""
        with self._lock:
            return max(0.0, self._next_allowed - self.clock())

    def check(self, guess: str) -> Verdict:
        """One guess; too early after a wrong one it is not even compared."""
        with self._lock:
            now = self.clock()
            if now < self._next_allowed:
                return Verdict(False, f"Too many wrong keys on this server: try again in {self._next_allowed - now:.0f} s.")
            if self.key and hmac.compare_digest(guess.encode(), self.key.encode()):
                self._failures, self._next_allowed = 0, 0.0
                log.info("The room view was unlocked.")
                return Verdict(True)
            self._failures += 1
            delay = min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** (self._failures - 1))
            self._next_allowed = now + delay
            log.warning("Wrong instructor key (%d in a row on this server); the next guess waits %.0f s.", self._failures, delay)
            return Verdict(False, f"That is not the instructor key. The next try is possible in {delay:.0f} s.")


__all__ = ["FIRST_DELAY_S", "MAX_DELAY_S", "MIN_KEY_LENGTH", "KeyGuard", "Verdict", "key_problem"]
