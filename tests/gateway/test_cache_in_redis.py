"""The result cache against a real Redis: what it holds is never served after a write, whichever gateway
made the write, whatever happened to the write, and whatever happened to Redis' own keys."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from opentelemetry.trace import NoOpTracer

from imagesearch.stack.redis import LocalRedis
from imagesearch_gateway.cache import CacheOptions, ResultCache

WINDOW = 1.0  # seconds a given-up write may still land, short for the tests


async def cache_on(redis: LocalRedis, namespace: str) -> ResultCache:
    # A generous timeout: these tests are about what may be cached when, not about a slow Redis
    # (a busy shared machine once took more than the default 0.25 s to connect).
    options = CacheOptions(
        redis_url=redis.url, cache_namespace=namespace, cache_write_window_seconds=WINDOW, cache_timeout_seconds=2.0
    )
    cache = ResultCache(options, NoOpTracer())
    await cache.connect()
    return cache


@pytest.fixture
async def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def gateways(redis_server: LocalRedis, namespace: str) -> AsyncIterator[tuple[ResultCache, ResultCache]]:
    """The caches of two gateway replicas sharing one Redis."""
    first, second = await cache_on(redis_server, namespace), await cache_on(redis_server, namespace)
    yield first, second
    await first.close()
    await second.close()


@pytest.fixture
async def raw(redis_server: LocalRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def store(cache: ResultCache, catalog: str, value: bytes = b"answer") -> None:
    _, token = await cache.get(catalog, "fp")
    assert token is not None
    await cache.put(catalog, "fp", token, value)


async def cached(cache: ResultCache, catalog: str) -> bytes | None:
    return (await cache.get(catalog, "fp"))[0]


async def settle(cache: ResultCache, catalog: str) -> None:
    """Past the window of "a write may be in flight" that a new catalog state starts with."""
    await cache.get(catalog, "fp")
    await asyncio.sleep(WINDOW + 0.1)


async def test_an_answer_is_served_until_a_write_from_any_replica(gateways: tuple[ResultCache, ResultCache]) -> None:
    a, b = gateways
    await settle(a, "shop")
    await store(a, "shop")
    assert await cached(b, "shop") == b"answer"  # one cache for every replica
    async with b.writing("shop"):
        pass
    assert await cached(a, "shop") is None


async def test_nothing_is_cached_while_a_write_is_in_flight(gateways: tuple[ResultCache, ResultCache]) -> None:
    a, b = gateways
    await settle(a, "shop")
    async with a.writing("shop"):
        value, token = await b.get("shop", "fp")
        assert value is None and token is None  # neither read nor stored: it may be half-landed
    await store(b, "shop")
    assert await cached(a, "shop") == b"answer"  # a finished write ends its mark at once


async def test_an_answer_computed_during_a_write_is_never_served_after_it(
    gateways: tuple[ResultCache, ResultCache],
) -> None:
    a, b = gateways
    await settle(a, "shop")
    _, token = await b.get("shop", "fp")  # a search starts, reads the token ...
    async with a.writing("shop"):  # ... a write starts and ends while it runs ...
        pass
    assert token is not None
    await b.put("shop", "fp", token, b"from before the write")  # ... and it stores its answer
    assert await cached(a, "shop") is None


async def test_a_write_that_failed_or_was_abandoned_keeps_its_catalog_uncached_for_the_window(
    gateways: tuple[ResultCache, ResultCache],
) -> None:
    a, b = gateways
    await settle(a, "shop")
    with pytest.raises(TimeoutError):
        async with a.writing("shop"):
            raise TimeoutError  # our deadline passed: the retriever may still be writing
    assert await b.get("shop", "fp") == (None, None)
    await asyncio.sleep(WINDOW + 0.1)
    await store(b, "shop")
    assert await cached(a, "shop") == b"answer"


async def test_a_lost_or_unreadable_catalog_state_means_uncached_for_a_window_never_an_old_answer(
    gateways: tuple[ResultCache, ResultCache], raw: aioredis.Redis
) -> None:
    a, b = gateways
    await settle(a, "shop")
    await store(a, "shop")
    state = a.state_key("shop")
    for damage in (
        lambda: raw.delete(state),  # evicted, or Redis restarted empty
        lambda: raw.set(state, "7"),  # another type (an older scheme's counter)
        lambda: raw.hset(state, mapping={"token": "x"}),  # a token too short to be ours
        lambda: raw.hset(state, mapping={"w:1": "not a time"}),
    ):
        await damage()
        resets = a.stats.resets
        assert await a.get("shop", "fp") == (None, None)
        assert a.stats.resets == resets + 1
    await asyncio.sleep(WINDOW + 0.1)
    assert await cached(b, "shop") is None  # a fresh token: the old answer is unreachable
    await store(b, "shop", b"new")
    assert await cached(a, "shop") == b"new"


async def test_deployments_sharing_a_redis_never_read_each_others_answers(
    redis_server: LocalRedis, namespace: str
) -> None:
    ours, theirs = await cache_on(redis_server, namespace), await cache_on(redis_server, namespace + "x")
    try:
        for cache in (ours, theirs):
            await settle(cache, "shop")
        await store(ours, "shop")
        assert await cached(theirs, "shop") is None
        assert ours.entry_key("shop", "t", "fp").startswith(f"{namespace}:")
    finally:
        await ours.close()
        await theirs.close()


async def test_a_write_while_redis_is_away_is_announced_before_the_cache_is_used_again(
    tmp_path: object, namespace: str
) -> None:
    redis = LocalRedis(dir=tmp_path)  # private: the test stops it
    redis.start()
    cache, other = await cache_on(redis, namespace), await cache_on(redis, namespace)
    try:
        await settle(cache, "shop")
        await store(cache, "shop")
        redis.stop()
        async with cache.writing("shop"):
            pass  # the write succeeds; Redis cannot be told
        redis = LocalRedis(port=redis.port, dir=tmp_path)  # back, with its old contents gone
        redis.start()
        await asyncio.sleep(2.1)  # past the cache's retry interval
        assert await cache.get("shop", "fp") == (None, None)  # announced: uncached for a window
        assert await other.get("shop", "fp") == (None, None)
    finally:
        await cache.close()
        await other.close()
        redis.stop()
