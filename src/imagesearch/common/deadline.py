"""The caller's deadline, carried to every downstream call of a request.

The server interceptor records when the incoming call must be answered (`received`); adapters
bound each call to a dependency by what is left of it (`bounded`), so a request never waits on a
dependency past the moment its caller stops listening, and nested hops share one budget instead
of each spending its own full timeout. A context variable, so it follows the request into tasks
and (with the context copied, as the Milvus adapter does) into worker threads.
"""

from __future__ import annotations

import contextvars
import time

from imagesearch.common.errors import DeadlineExceeded

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("imagesearch_deadline", default=None)
# Kept for the reply: a downstream call gets what is left minus this, so that its failure can
# still travel back before the caller's own deadline.
REPLY_MARGIN_SECONDS = 0.02


def received(time_remaining: float | None) -> contextvars.Token[float | None]:
    """Record an incoming call's deadline (None: the caller set none)."""
    deadline = None if time_remaining is None else time.monotonic() + time_remaining
    return _DEADLINE.set(deadline)


def reset(token: contextvars.Token[float | None]) -> None:
    _DEADLINE.reset(token)


def remaining() -> float | None:
    """Seconds left to answer the current request; None outside a request or without a deadline."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def bounded(timeout: float, what: str) -> float:
    """`timeout`, cut to what the caller has left; DEADLINE_EXCEEDED at once when nothing is left."""
    left = remaining()
    if left is None:
        return timeout
    left -= REPLY_MARGIN_SECONDS
    if left <= 0:
        raise DeadlineExceeded(f"the caller's deadline passed before the call to {what}")
    return min(timeout, left)
