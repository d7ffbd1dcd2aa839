"""Budgets: a count of something (calls, bytes) with a ceiling, whose reservations never wait.

A reservation either fits now or fails now with ResourceExhausted, naming the resource and how
much of it is in use: behind the servers' admission control (imagesearch.common.admission) and
the embedder's decode-memory budget. Pure Python and thread-safe: decode threads reserve too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from imagesearch.common.errors import ResourceExhausted


def mib(n: int) -> str:
    """Bytes, for people."""
    return f"{n / 2**20:.1f} MiB"


class Budget:
    """A thread-safe count of something (calls, bytes) with a ceiling; reservations never wait.

    `what` names the resource in refusals ("decode memory", ...), `unit` formats amounts.
    """

    def __init__(self, capacity: int, what: str, unit: Callable[[int], str] = str) -> None:
        if capacity < 1:
            raise ValueError(f"{what}: the capacity must be at least 1, got {capacity}")
        self.capacity, self.what, self._unit = capacity, what, unit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def try_acquire(self, amount: int) -> bool:
        with self._lock:
            if self._used + amount > self.capacity and self._used > 0:
                return False
            # An amount larger than the whole budget is admitted when nothing else is in flight:
            # a single request that fits the per-item limits must not be refused forever.
            self._used += amount
            return True

    def acquire(self, amount: int) -> None:
        """Reserve `amount` now, or raise ResourceExhausted saying how much is in use."""
        if not self.try_acquire(amount):
            raise ResourceExhausted(
                f"{self.what} is exhausted: {self._unit(self._used)} of {self._unit(self.capacity)} in use, "
                f"this needs {self._unit(amount)}; retry with back-off"
            )

    def release(self, amount: int) -> None:
        with self._lock:
            self._used = max(0, self._used - amount)

    @contextmanager
    def holding(self, amount: int) -> Iterator[None]:
        self.acquire(amount)
        try:
            yield
        finally:
            self.release(amount)

    def ledger(self) -> Ledger:
        return Ledger(self)


class RequestEnded(Exception):
    """Raised in a worker that reserves for a request that has already ended: its work is wasted."""


class Ledger:
    """The reservations of one request, released together when it ends (`with budget.ledger() as l:`).

    Worker threads reserve inside `with ledger.working():`. What they reserved is released when
    both the request has ended (also by failing or being cancelled half-way) and the last worker
    has finished: a cancelled request must not free memory a decode thread still holds.
    """

    def __init__(self, budget: Budget) -> None:
        self._budget = budget
        self._held = 0
        self._workers = 0
        self._ended = False
        self._lock = threading.Lock()

    def reserve(self, amount: int) -> None:
        """Reserve for this request; RequestEnded once it has ended (cancelled, failed, timed out),
        so a worker still running for it stops at its next reservation instead of finishing."""
        if self._ended:
            raise RequestEnded("the request ended; its remaining work is dropped")
        self._budget.acquire(amount)
        with self._lock:
            self._held += amount

    @contextmanager
    def working(self) -> Iterator[None]:
        with self._lock:
            self._workers += 1
        try:
            yield
        finally:
            with self._lock:
                self._workers -= 1
            self._settle()

    def _settle(self) -> None:
        with self._lock:
            if not self._ended or self._workers:
                return
            held, self._held = self._held, 0
        self._budget.release(held)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._ended = True
        self._settle()
