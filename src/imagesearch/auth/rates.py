"""Requests per second per caller: token buckets, refused with how long to wait (pure Python).

Each key gets `rate` tokens a second up to `burst`; a call takes one or is refused with the
seconds until the next token, which the gateway returns as a retry hint. Buckets live in the
process: with N gateway replicas behind a balancer a key gets up to N times its rate in all
(docs/security.md). The table is bounded (least recently used out), so a flood of distinct
callers costs memory once, not without end.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    def __init__(self, max_callers: int = 100_000) -> None:
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._max = max_callers
        self._lock = threading.Lock()

    def take(self, caller: str, rate: float, burst: float, now: float) -> float:
        """0.0 when the call may go ahead, else the seconds until it may."""
        if rate <= 0:
            return 0.0  # unlimited
        with self._lock:
            bucket = self._buckets.pop(caller, None) or _Bucket(burst, now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
            self._buckets[caller] = bucket
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate
