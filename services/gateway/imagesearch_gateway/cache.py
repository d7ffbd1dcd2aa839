"""Redis result cache that never outlives a catalog change and never fails a search.

Keys combine a catalog *generation* (a Redis counter every upsert/delete
advances) with the request's fingerprint, so a write makes every older answer
unreachable at once, across all gateway replicas; TTLs then reclaim them.

Redis is an optimisation: every failure is logged, counted and answered as a
miss. After a failure the cache is skipped for `retry_seconds` so an outage
costs one timeout, not one per request. If a write could not advance the
generation (Redis down at that moment), reads stay off until a later bump
succeeds, so a cached answer from before the write can never be served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as aioredis
from opentelemetry.trace import Tracer

log = logging.getLogger(__name__)
T = TypeVar("T")

GENERATION_KEY = "imagesearch:catalog:generation:"  # + catalog name ("" = default)
ENTRY_PREFIX = "imagesearch:search:"


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    errors: int = 0
    bypassed: int = 0


@dataclass(frozen=True)
class CacheOptions:
    """The gateway's cache settings, by name."""

    redis_url: str  # "" turns caching off
    cache_ttl_seconds: int = 300
    cache_timeout_seconds: float = 0.25  # give up on Redis after this long and search uncached
    cache_retry_seconds: float = 2.0  # after a failure, skip the cache this long


class ResultCache:
    def __init__(self, options: CacheOptions, tracer: Tracer) -> None:
        self._url, self._ttl = options.redis_url, options.cache_ttl_seconds
        self._timeout, self._retry = options.cache_timeout_seconds, options.cache_retry_seconds
        self._tracer = tracer
        self._client: aioredis.Redis | None = None
        self._down_until = 0.0
        self._bump_pending: set[str] = set()  # catalogs whose generation must advance
        self.stats = CacheStats()

    @property
    def enabled(self) -> bool:
        return bool(self._url)

    async def connect(self) -> None:
        if self.enabled:
            self._client = aioredis.from_url(
                self._url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry_on_timeout=False,
            )

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
        with self._tracer.start_as_current_span(f"redis {operation}", attributes={"db.system": "redis"}) as span:
            try:
                return await asyncio.wait_for(command(client), self._timeout)
            except (TimeoutError, aioredis.RedisError, OSError) as err:
                span.set_attribute("error", True)
                span.record_exception(err)
                self._failed(operation, err)
                raise _CacheDown() from err

    async def _generation(self, catalog: str) -> int | None:
        """The catalog's current generation, or None when the cache must not be read."""
        if not self._available():
            return None
        key = GENERATION_KEY + catalog
        try:
            if catalog in self._bump_pending:
                await self._call("INCR", lambda redis: redis.incr(key))
                self._bump_pending.discard(catalog)
            raw = await self._call("GET", lambda redis: redis.get(key))
        except _CacheDown:
            return None
        return int(raw or 0)

    async def get(self, catalog: str, fingerprint: str, read: bool = True) -> tuple[bytes | None, int | None]:
        """(cached value or None, generation to store under or None when caching is off).

        `read=False` (the caller skips the cache) only learns the generation to store under.
        """
        generation = await self._generation(catalog)
        if generation is None or not read:
            self.stats.bypassed += 1
            return None, generation
        key = f"{ENTRY_PREFIX}{catalog}:{generation}:{fingerprint}"
        try:
            value = await self._call("GET", lambda redis: redis.get(key))
        except _CacheDown:
            return None, None
        if value is None:
            self.stats.misses += 1
            return None, generation
        self.stats.hits += 1
        # The client does not decode responses, so values come back as bytes.
        return value.encode() if isinstance(value, str) else value, generation

    async def put(self, catalog: str, fingerprint: str, generation: int, value: bytes) -> None:
        if not self._available():
            return
        key = f"{ENTRY_PREFIX}{catalog}:{generation}:{fingerprint}"
        with contextlib.suppress(_CacheDown):  # logged and counted by _call
            await self._call("SET", lambda redis: redis.set(key, value, ex=self._ttl))

    async def invalidate(self, catalog: str) -> None:
        """Advance the catalog's generation after a write; remembered if Redis is down."""
        if self._client is None:
            return
        self._bump_pending.add(catalog)
        if not self._available():
            return
        with contextlib.suppress(_CacheDown):  # logged and counted by _call; the bump stays pending
            await self._call("INCR", lambda redis: redis.incr(GENERATION_KEY + catalog))
            self._bump_pending.discard(catalog)


class _CacheDown(Exception):
    """Internal: a Redis call failed and has been logged and counted."""
