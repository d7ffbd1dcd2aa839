"""Fail fast while a dependency is known to be down, and find out by itself when it is back.

Without it every call to a hung dependency waits out its whole deadline (a SIGSTOPped Triton held
every search for 10 s). A `Breaker` opens on the first outage-like failure: UNAVAILABLE, a
DEADLINE_EXCEEDED under our own timeout (not one cut short by our caller's deadline: a hurried
caller says nothing about the dependency), or a failed health probe. While open, every call fails
at once with UNAVAILABLE naming the dependency and the failure. Only health probes (short timeouts,
every few seconds, from the service's health loop) test whether it is back, so no caller's request
is spent waiting on a dependency known to be down; a successful probe, or any answer, closes it.
Caller faults (INVALID_ARGUMENT, NOT_FOUND, ...) never open it.

Pure Python and thread-safe (the Milvus adapter calls from worker threads).
"""

from __future__ import annotations

import threading

from imagesearch.common.errors import DeadlineExceeded, DomainError, Unavailable

# A health probe slower than this counts as a failure: probes find a hung dependency, fast.
PROBE_TIMEOUT_SECONDS = 1.0
# Domain errors that say the dependency, not the request, failed.
OUTAGES: tuple[type[DomainError], ...] = (Unavailable, DeadlineExceeded)


class Breaker:
    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._open = False
        self._reason = ""
        self.opened = 0  # times it opened, for metrics and tests

    def check(self) -> None:
        """Raise UNAVAILABLE at once while the breaker is open."""
        if self._open:
            raise Unavailable(f"{self.name} is unavailable (failing fast after: {self._reason}); retry shortly")

    @property
    def is_open(self) -> bool:
        return self._open

    def succeeded(self) -> None:
        with self._lock:
            self._open = False

    def failed(self, reason: str) -> None:
        with self._lock:
            if not self._open:
                self.opened += 1
            self._open, self._reason = True, reason

    def record(self, err: BaseException, cut_by_caller: bool = False) -> None:
        """A call failed with `err`: outages open the breaker (a timeout only when it was our own,
        `cut_by_caller` False); any other answer says the dependency is up."""
        if isinstance(err, DeadlineExceeded) and cut_by_caller:
            return
        if isinstance(err, OUTAGES):
            self.failed(err.message)
        elif isinstance(err, DomainError):
            self.succeeded()
