"""Fail fast while a dependency is known to be down, and find out by itself when it is back.

Without it every call to a hung dependency waits out its whole deadline (a SIGSTOPped Triton held
every search for 10 s). A `Breaker` opens on the first outage-like failure (UNAVAILABLE or
DEADLINE_EXCEEDED from the dependency, or a failed health probe): for `cool_seconds` every call
fails at once with UNAVAILABLE naming the dependency and the failure. Then one call (or the next
health probe) is let through as a trial; the others keep failing fast until it has answered.
Success closes the breaker. Caller faults (INVALID_ARGUMENT, NOT_FOUND, ...) never open it.

Pure Python and thread-safe (the Milvus adapter calls from worker threads).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from imagesearch.common.errors import DeadlineExceeded, DomainError, Unavailable

# A health probe slower than this counts as a failure: probes find a hung dependency, fast.
PROBE_TIMEOUT_SECONDS = 1.0
# Domain errors that say the dependency, not the request, failed.
OUTAGES: tuple[type[DomainError], ...] = (Unavailable, DeadlineExceeded)


class Breaker:
    def __init__(self, name: str, cool_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self._cool, self._clock = name, cool_seconds, clock
        self._lock = threading.Lock()
        self._open_until: float | None = None  # None: closed
        self._trial = False  # a call is testing the dependency now
        self._reason = ""
        self.opened = 0  # times it opened, for metrics and tests

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def allow(self) -> bool:
        """Whether a call may go to the dependency now; False: fail fast (see `check`)."""
        with self._lock:
            if self._open_until is None:
                return True
            if self._clock() < self._open_until or self._trial:
                return False
            self._trial = True  # this caller tests the dependency; the rest wait for its answer
            return True

    def check(self) -> None:
        """Raise UNAVAILABLE at once while the breaker is open."""
        if not self.allow():
            raise Unavailable(f"{self.name} is unavailable (failing fast after: {self._reason}); retry shortly")

    def succeeded(self) -> None:
        with self._lock:
            self._open_until, self._trial = None, False

    def failed(self, reason: str) -> None:
        with self._lock:
            if self._open_until is None:
                self.opened += 1
            self._open_until, self._trial, self._reason = self._clock() + self._cool, False, reason

    def record(self, err: BaseException) -> None:
        """A call failed with `err`: outages open the breaker; anything else says the dependency answered."""
        if isinstance(err, OUTAGES):
            self.failed(err.message)
        elif isinstance(err, DomainError):
            self.succeeded()
        else:
            self.release()

    def release(self) -> None:
        """A trial ended without telling us anything (cancelled, or our own bug): let another one try."""
        with self._lock:
            self._trial = False
