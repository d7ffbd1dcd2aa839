"""Write horizons shared by every retriever replica, in Redis: what a read must wait for, at most.

A catalog's *horizon* is a Milvus timestamp at or after the commit of every write of the catalog
that has returned OK, on any replica. A read that passes it as its guarantee timestamp
(consistency "Customized") sees all those writes, and waits only while Milvus' query node has
not served that timestamp yet; right after a write's own barrier it has, so a read normally
waits not at all. A read that cannot learn a trustworthy horizon reads Strong instead: Redis is
a cache, and nothing it loses or cannot answer makes a read stale, only slower.

Each catalog has one hash, changed only by the Lua scripts below (atomic across replicas):

* `r`: the Redis server's run_id when the hash was written. A hash of another run_id (a Redis
  restarted from a snapshot, or a replica promoted by a failover, either of which may have lost
  the latest updates) is not trusted: it counts as missing.
* `h`: the horizon, once known. Updates take the maximum, so a slower writer never lowers it.
* `s` and `m`: a horizon being *re-learnt*. A missing hash (never written, evicted, Redis
  restarted empty) cannot simply be recreated from the next write's timestamp: a write that had
  returned before the loss may be newer. So a write first *prepares* (before its commit): a
  missing hash becomes a placeholder with a random nonce `s`, and readers read Strong while it is
  one. The write's commit timestamp is then newer than the placeholder, hence newer than every
  write that returned before the hash was lost; the write that prepared it turns it back into a
  horizon, the maximum of its own timestamp and `m`, the largest one recorded into the
  placeholder meanwhile by other writes. A write that finds the placeholder gone or replaced
  since its prepare (lost again) only adds its timestamp to the new placeholder's `m`.

So every write that returned OK is at or below every horizon a reader will trust. A write whose
timestamp could not be recorded (Redis unreachable) fails UNAVAILABLE, and a write is not
started while Redis is known to be down (the breaker): reads never depend on Redis, writes of a
deployment with several replicas do. Timestamps are compared as zero-padded decimal strings:
Milvus' hybrid timestamps (~4.7e17) are beyond the exact integers of Lua's doubles.

A reader that finds no horizon *relearns* it too (at most once a second per catalog and
process), the same way: it prepares (making or finding the placeholder), then asks Milvus for a
fresh timestamp, newer than the placeholder and so than every write the lost horizon covered,
and records it. So a catalog that is read but not written is back on the fast path within a
second of Redis coming back empty, and a placeholder whose writer died does not linger.

The process also keeps its own maximum per catalog, so a replica's reads never go below its own
writes, whatever Redis holds.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from opentelemetry.trace import Tracer, TracerProvider
from redis.backoff import NoBackoff
from redis.retry import Retry

from imagesearch.common.breaker import Breaker
from imagesearch.common.errors import Unavailable

log = logging.getLogger(__name__)

RELEARN_INTERVAL_SECONDS = 1.0
_DIGITS = 20  # 2^64 has 20 decimal digits: every Milvus timestamp fits, zero-padded

# Shared prologue: the server's run_id, and the hash's fields (nil when missing or not ours).
_PROLOGUE = """
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local r, h, s, m = nil, nil, nil, nil
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' then
  local f = redis.call('HMGET', KEYS[1], 'r', 'h', 's', 'm')
  r, h, s, m = f[1], f[2], f[3], f[4]
end
local valid = r == run and (h ~= false or s ~= false)
local function larger(a, b)
  if a == false or a == nil or b > a then return b end
  return a
end
"""

# -> the horizon, or false when it is not known.
_READ = (
    _PROLOGUE
    + """
if valid and s == false then return h end
return false
"""
)

# ARGV[1] = a fresh nonce. -> the nonce the write must record with ('' when the horizon is known).
_PREPARE = (
    _PROLOGUE
    + """
if not valid then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'r', run, 's', ARGV[1], 'm', '0')
  return ARGV[1]
end
if s ~= false then return s end
return ''
"""
)

# ARGV[1] = the write's timestamp, ARGV[2] = the nonce from PREPARE, ARGV[3] = a fresh nonce.
# -> 'known' or 'relearning'.
_RECORD = (
    _PROLOGUE
    + """
if not valid then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'r', run, 's', ARGV[3], 'm', ARGV[1])
  return 'relearning'
end
if s == false then
  redis.call('HSET', KEYS[1], 'h', larger(h, ARGV[1]))
  return 'known'
end
if s == ARGV[2] then
  redis.call('HSET', KEYS[1], 'h', larger(m, ARGV[1]))
  redis.call('HDEL', KEYS[1], 's', 'm')
  return 'known'
end
redis.call('HSET', KEYS[1], 'm', larger(m, ARGV[1]))
return 'relearning'
"""
)


def encode(ts: int) -> str:
    return f"{ts:0{_DIGITS}d}"


class Horizons:
    """The catalogs' write horizons in one Redis (see the module doc). Thread-safe; blocking calls
    with a short timeout, made from the Milvus store's worker threads."""

    def __init__(self, url: str, namespace: str, timeout_seconds: float, tracer_provider: TracerProvider) -> None:
        self._namespace = namespace
        self._tracer: Tracer = tracer_provider.get_tracer("imagesearch.retriever.horizon")
        # No retries: a slow or absent Redis costs one timeout, then the breaker answers.
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._read = self._client.register_script(_READ)
        self._prepare = self._client.register_script(_PREPARE)
        self._record = self._client.register_script(_RECORD)
        self._breaker = Breaker("redis (write horizons)")
        self._lock = threading.Lock()
        self._own: dict[str, int] = {}  # catalog -> newest timestamp of this process' writes
        self._relearnt: dict[str, float] = {}  # catalog -> when this process last tried to relearn it
        self.strong_reads = 0  # reads that found no trustworthy horizon (for tests and logs)

    @property
    def breaker(self) -> Breaker:
        """Open while Redis is known to be unreachable (for /metrics)."""
        return self._breaker

    def key(self, catalog: str) -> str:
        # The catalog in braces, as the gateway's keys: one Redis Cluster slot per catalog.
        return f"{self._namespace}:retriever:horizon:{{{catalog}}}"

    def read(self, catalog: str) -> int | None:
        """The catalog's horizon, or None when no trustworthy one is known (the read must be Strong)."""
        if self._breaker.is_open:
            self.strong_reads += 1
            return None
        try:
            reply = self._call("read", self._read, catalog)
        except Unavailable:
            reply = None
        if reply is None:
            self.strong_reads += 1
            return None
        return max(int(reply), self._own_max(catalog))

    def prepare(self, catalog: str) -> str:
        """Before a write's commit: the nonce to record it with. UNAVAILABLE (and the write must not
        commit) when Redis is down: other replicas could not learn of the write."""
        self._breaker.check()
        return self._call("prepare", self._prepare, catalog, secrets.token_hex(8)) or ""

    def record(self, catalog: str, ts: int, nonce: str) -> None:
        """After a write's commit (its timestamp `ts`): raise the catalog's horizon to it."""
        with self._lock:
            self._own[catalog] = max(ts, self._own.get(catalog, 0))
        reply = self._call("record", self._record, catalog, encode(ts), nonce, secrets.token_hex(8))
        if reply == "relearning":
            log.info("write horizon of catalog %r was lost (Redis emptied or restarted): relearning it", catalog)

    def relearn(self, catalog: str, fresh_timestamp: Callable[[], int]) -> None:
        """After a read found no horizon: make it known again, from `fresh_timestamp()` (a Milvus
        timestamp allocated when called, i.e. after the placeholder exists). Best effort, at most
        once per RELEARN_INTERVAL_SECONDS per catalog; the read itself is Strong either way."""
        now = time.monotonic()
        with self._lock:
            if self._breaker.is_open or now - self._relearnt.get(catalog, -1e9) < RELEARN_INTERVAL_SECONDS:
                return
            self._relearnt[catalog] = now
        try:
            nonce = self.prepare(catalog)
            if not nonce:
                return  # known again meanwhile
            ts = fresh_timestamp()
            self._call("record", self._record, catalog, encode(ts), nonce, secrets.token_hex(8))
        except Exception as err:  # noqa: BLE001 - best effort: the read goes on Strong
            log.debug("relearning the write horizon of catalog %r failed: %s", catalog, err)
            return
        log.info("write horizon of catalog %r relearnt: reads no longer need Strong", catalog)

    def probe(self) -> None:
        """From the health loop while the breaker is open: closes it once Redis answers."""
        if not self._breaker.is_open:
            return
        try:
            self._client.ping()
        except (redis.RedisError, OSError) as err:
            self._breaker.failed(f"ping: {err}")
            return
        log.info("redis answers again: reads use the shared write horizons")
        self._breaker.succeeded()

    def close(self) -> None:
        self._client.close()

    def _own_max(self, catalog: str) -> int:
        with self._lock:
            return self._own.get(catalog, 0)

    def _call(self, operation: str, script: Any, catalog: str, *args: str) -> str | None:
        with self._tracer.start_as_current_span(f"redis horizon {operation}", attributes={"db.system": "redis"}):
            try:
                reply = script(keys=[self.key(catalog)], args=list(args))
            except (redis.RedisError, OSError) as err:
                if not self._breaker.is_open:
                    log.warning(
                        "redis %s of a write horizon failed (%s): reading Strong until it answers", operation, err
                    )
                self._breaker.failed(f"{operation}: {err}")
                raise Unavailable(f"redis (write horizons) unavailable: {err}") from err
        self._breaker.succeeded()
        if reply is None:
            return None
        return reply.decode() if isinstance(reply, bytes) else str(reply)
