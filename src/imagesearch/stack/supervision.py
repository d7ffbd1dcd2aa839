"""When `imagesearch up` restarts a part that crashed, and when it gives up (pure policy).

A crashed child is restarted after a back-off that doubles with each recent restart (1 s, 2 s,
4 s, ... at most 30 s), so a part that crashes at once is not restarted in a tight loop. A part
that has been restarted `max_restarts` times within `window_seconds` is crash-looping: the stack
stops, showing its log, instead of hiding the problem behind endless restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RestartPolicy:
    first_delay: float = 1.0
    max_delay: float = 30.0
    max_restarts: int = 5
    window_seconds: float = 600.0

    def delay(self, history: list[float], now: float) -> float | None:
        """Seconds to wait before the next restart, given when earlier ones happened; None: give up."""
        recent = [t for t in history if now - t < self.window_seconds]
        if len(recent) >= self.max_restarts:
            return None
        return float(min(self.first_delay * 2 ** len(recent), self.max_delay))


@dataclass
class Restarts:
    """One part's restarts: when they happened, and when the pending one is due."""

    history: list[float] = field(default_factory=list)
    due: float | None = None
