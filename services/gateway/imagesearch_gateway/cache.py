"""Redis result cache that never serves an answer older than a finished write, and never fails a search.

Each catalog has one small state hash in Redis, shared by every gateway replica:

* `token`: a random string in the key of every cached answer. A write replaces it before it
  starts and again when it ends, so every answer cached before or during the write becomes
  unreachable at once (TTLs then reclaim them). Tokens are random, not counters: a state lost to
  eviction or a restart cannot come back to a value old answers were stored under.
* `w:<id>`: one field per write in flight, holding when it stops counting (Redis time, ms).
  While any is live the catalog is read and stored uncached: an answer computed while a write
  may still be landing is not kept. A write that finishes removes its field; a write its caller
  gave up on (deadline, cancellation) keeps it until `write_window_seconds` have passed, the
  longest such a write may still land.

A missing state (evicted, Redis restarted empty) is recreated as "a write may be in flight" for
one window, since whatever marked a write in flight may have been lost with it. A state that is
not a hash, or whose fields do not parse, is replaced the same way. Every read and change is a
Lua script, so it is atomic across replicas and uses the Redis server's clock, not ours.

Redis is an optimisation: every failure is logged, counted and answered as a miss, and after a
failure the cache is skipped for `retry_seconds`, so an outage costs one timeout rather than one per
request. A write that could not reach Redis is remembered, and this gateway re-marks the catalog
(new token, one window of no caching) before it uses the cache again. Keys start with
`namespace`, so deployments sharing one Redis never read each other's answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from opentelemetry.trace import Tracer

from imagesearch.auth.usage import usage_key
from imagesearch.common.metrics import UNTIMED

log = logging.getLogger(__name__)
T = TypeVar("T")

# KEYS[1] = the catalog's state; ARGV[1] = a fresh token, ARGV[2] = the write window (ms).
# Shared prologue: the server's clock, and a state that can be trusted (else recreated as a
# window of "a write may be in flight").
_PROLOGUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
local token, live, trusted = nil, 0, redis.call('TYPE', KEYS[1])['ok'] == 'hash'
if trusted then
  local fields = redis.call('HGETALL', KEYS[1])
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    if name == 'token' then
      token = value
    elseif string.sub(name, 1, 2) == 'w:' then
      local expiry = tonumber(value)
      if expiry == nil then
        trusted = false
      elseif expiry <= now then
        redis.call('HDEL', KEYS[1], name)
      else
        live = live + 1
      end
    end
  end
  trusted = trusted and token ~= nil and string.len(token) >= 16
end
local why = 'ok'
if not trusted then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'token', ARGV[1], 'w:unknown', now + window)
  token, live, why = ARGV[1], 1, 'reset'
end
"""
# Returns {token, or '' when the catalog must not be cached now; 'ok' or 'reset'}.
_READ = (
    _PROLOGUE
    + """
if live > 0 then
  return {'', why}
end
return {token, why}
"""
)
# ARGV[3] = the write's id: a new token, and the write marked in flight for one window.
_BEGIN = (
    _PROLOGUE
    + """
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'w:' .. ARGV[3], now + window)
return {'', why}
"""
)
# ARGV[3] = the write's id: a new token, and the write no longer in flight.
_END = (
    _PROLOGUE
    + """
redis.call('HSET', KEYS[1], 'token', ARGV[1])
redis.call('HDEL', KEYS[1], 'w:' .. ARGV[3])
return {'', why}
"""
)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    errors: int = 0
    bypassed: int = 0  # not read: caching off, skip_cache, Redis away, or a write in flight
    corrupt: int = 0  # values that did not decode as an answer (read as misses)
    resets: int = 0  # catalog states found missing or unreadable, recreated


@dataclass(frozen=True)
class CacheOptions:
    """The gateway's cache settings, by name."""

    redis_url: str  # "" turns caching off
    cache_namespace: str = "imagesearch"
    cache_ttl_seconds: int = 300
    cache_timeout_seconds: float = 0.25  # give up on Redis after this long and search uncached
    cache_retry_seconds: float = 2.0  # after a failure, skip the cache this long
    cache_write_window_seconds: float = 60.0  # how long a given-up write may still land


class ResultCache:
    def __init__(self, options: CacheOptions, tracer: Tracer) -> None:
        self._url, self._ttl = options.redis_url, options.cache_ttl_seconds
        self._timeout, self._retry = options.cache_timeout_seconds, options.cache_retry_seconds
        self._window_ms = int(options.cache_write_window_seconds * 1000)
        self._namespace = options.cache_namespace
        self._background: set[asyncio.Task[None]] = set()
        self._tracer = tracer
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._down_until = 0.0
        self._mark_pending: set[str] = set()  # catalogs written while Redis could not be told
        self.stats = CacheStats()
        self.calls = UNTIMED  # the service's Redis timer, once it has metrics (GatewayBackend.register_metrics)

    @property
    def enabled(self) -> bool:
        return bool(self._url)

    def state_key(self, catalog: str) -> str:
        return f"{self._namespace}:catalog:{{{catalog}}}:state"

    def entry_key(self, catalog: str, token: str, fingerprint: str) -> str:
        # The catalog in braces: a Redis Cluster keeps a catalog's keys on one shard.
        return f"{self._namespace}:search:{{{catalog}}}:{token}:{fingerprint}"

    async def connect(self) -> None:
        if self.enabled:
            self._client = aioredis.from_url(
                self._url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry_on_timeout=False,
            )
            self._scripts = {
                name: self._client.register_script(body)
                for name, body in (("read", _READ), ("begin", _BEGIN), ("end", _END))
            }

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _available(self) -> bool:
        return self._client is not None and time.monotonic() >= self._down_until

    def _failed(self, operation: str, err: Exception) -> None:
        self.stats.errors += 1
        if time.monotonic() >= self._down_until:
            log.warning("redis %s failed (%s); searching uncached for %.1f s", operation, err, self._retry)
        self._down_until = time.monotonic() + self._retry

    async def _call(self, operation: str, command: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run one Redis command under a span and a hard timeout; _CacheDown (logged, counted) on failure."""
        client = self._client
        if client is None:
            raise _CacheDown()
        with (
            self._tracer.start_as_current_span(f"redis {operation}", attributes={"db.system": "redis"}) as span,
            self.calls.timed(operation.lower()),
        ):
            try:
                return await asyncio.wait_for(command(client), self._timeout)
            except (TimeoutError, aioredis.RedisError, OSError) as err:
                span.set_attribute("error", True)
                span.record_exception(err)
                self._failed(operation, err)
                raise _CacheDown() from err

    async def _script(self, name: str, catalog: str, *extra: str) -> tuple[str, str]:
        script = self._scripts[name]
        args = [secrets.token_hex(16), str(self._window_ms), *extra]
        reply = await self._call(name.upper(), lambda _redis: script(keys=[self.state_key(catalog)], args=args))
        token, why = (item.decode() if isinstance(item, bytes) else str(item) for item in reply)
        if why == "reset":
            self.stats.resets += 1
            # A new catalog, or a state lost to eviction or a Redis restart, or damaged.
            log.info(
                "no usable cache state for catalog %r (new, evicted or damaged): caching it again in %.0f s",
                catalog,
                self._window_ms / 1000,
            )
        return token, why

    async def _token(self, catalog: str) -> str | None:
        """The token to read and store the catalog's answers under, or None when it must not be cached now."""
        if not self._available():
            return None
        try:
            if catalog in self._mark_pending:  # a write this gateway could not announce
                await self._script("begin", catalog, secrets.token_hex(8))
                self._mark_pending.discard(catalog)
            token, _ = await self._script("read", catalog)
        except _CacheDown:
            return None
        return token or None

    async def get(self, catalog: str, fingerprint: str, read: bool = True) -> tuple[bytes | None, str | None]:
        """(cached value or None, token to store under or None when the answer must not be stored).

        `read=False` (the caller skips the cache) only learns the token to store under.
        """
        token = await self._token(catalog)
        if token is None or not read:
            self.stats.bypassed += 1
            return None, token
        key = self.entry_key(catalog, token, fingerprint)
        try:
            value = await self._call("GET", lambda redis: redis.get(key))
        except _CacheDown:
            return None, None
        if value is None:
            self.stats.misses += 1
            return None, token
        self.stats.hits += 1
        # The client does not decode responses, so values come back as bytes.
        return value.encode() if isinstance(value, str) else value, token

    async def put(self, catalog: str, fingerprint: str, token: str, value: bytes) -> None:
        if not self._available():
            return
        key = self.entry_key(catalog, token, fingerprint)
        with contextlib.suppress(_CacheDown):  # logged and counted by _call
            await self._call("SET", lambda redis: redis.set(key, value, ex=self._ttl))

    def note_key_use(self, key_id: str, when: float) -> None:
        """Record when an API key was used (imagesearch.auth.usage), without holding up the call."""
        if not self._available():
            return
        key = usage_key(self._namespace)

        async def note() -> None:
            with contextlib.suppress(_CacheDown):  # best effort: logged and counted by _call
                await self._call("HSET", lambda redis: redis.hset(key, key_id, str(int(when))))

        task = asyncio.get_running_loop().create_task(note())
        self._background.add(task)  # held until done: a task nobody references may be collected
        task.add_done_callback(self._background.discard)

    def discard_corrupt(self) -> None:
        """A value read back did not decode (corrupt, or written by something else): counted, read as a miss."""
        self.stats.corrupt += 1
        self.stats.hits -= 1
        self.stats.misses += 1

    @contextlib.asynccontextmanager
    async def writing(self, catalog: str) -> AsyncIterator[None]:
        """Around a write to the catalog: answers cached before it, and while it may be landing, are
        never served after it.

        Only a write that returned ends its mark at once. One that failed or was cancelled may have
        landed in part, or may still be landing (its caller gave up; the retriever finishes the
        step it is in): its mark stays for the whole window.
        """
        if self._client is None:
            yield
            return
        write_id = secrets.token_hex(8)
        if not await self._mark(catalog, "begin", write_id):
            self._mark_pending.add(catalog)  # announced (new token, one window) once Redis answers
        yield  # an exception leaves the mark to expire
        if catalog not in self._mark_pending and not await self._mark(catalog, "end", write_id):
            self._mark_pending.add(catalog)

    async def _mark(self, catalog: str, script: str, write_id: str) -> bool:
        if not self._available():
            return False
        try:
            await self._script(script, catalog, write_id)
        except _CacheDown:
            return False
        return True


class _CacheDown(Exception):
    """Internal: a Redis call failed and has been logged and counted."""
