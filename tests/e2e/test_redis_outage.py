"""A Redis outage (killed, back empty, or hung) degrades to uncached searches and never fails them."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from support import WRITE_WINDOW_SECONDS, open_channel, product_input, read_rows

from imagesearch.stack.redis import LocalRedis, without_password
from imagesearch.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_searches_survive_redis_going_away_and_use_it_again_when_back(fleet, dev_set, tmp_path) -> None:
    redis = LocalRedis(dir=tmp_path)  # private: stopping the machine's shared Redis would hurt others
    redis.start()
    gateway_server, backend = await fleet.start_gateway(redis_url=redis.url)
    image = (dev_set / read_rows(dev_set / "catalog.csv")[60]["image"]).read_bytes()
    request = search_pb2.SearchRequest(image=image, top_k=5)
    try:
        async with open_channel(gateway_server.address) as channel:
            gateway = search_pb2_grpc.SearchServiceStub(channel)
            await gateway.UpsertProducts(search_pb2.UpsertProductsRequest(products=[product_input("r-1", [image])]))
            await asyncio.sleep(WRITE_WINDOW_SECONDS + 0.1)  # a new cache state starts with one window uncached
            await gateway.Search(request)
            assert (await gateway.Search(request)).cache_hit

            redis.kill()
            for _ in range(3):
                reply = await gateway.Search(request)
                assert not reply.cache_hit and reply.hits[0].product_id == "r-1"
            # A write while Redis is down must still invalidate what Redis may hold when it returns.
            await gateway.UpsertProducts(search_pb2.UpsertProductsRequest(products=[product_input("r-2", [image])]))
            assert backend.cache.stats.errors > 0

            redis.start()  # back on the same address, empty
            await asyncio.sleep(0.6)  # past the gateway's cache retry interval
            first = await gateway.Search(request)  # the gateway first announces the write Redis missed ...
            await asyncio.sleep(WRITE_WINDOW_SECONDS + 0.1)  # ... which keeps the catalog uncached one window
            second = await gateway.Search(request)
            third = await gateway.Search(request)
            assert not first.cache_hit and not second.cache_hit and third.cache_hit
            assert {h.product_id for h in third.hits[:2]} == {"r-1", "r-2"}
            await gateway.DeleteProducts(search_pb2.DeleteProductsRequest(product_ids=["r-1", "r-2"]))
    finally:
        await fleet.stop_extra()
        redis.stop()


async def test_a_hung_redis_costs_searches_a_short_timeout_once_and_never_an_error(fleet, dev_set, tmp_path) -> None:
    """SIGSTOP: connections stay open but nothing answers. A search gives up on Redis after
    CACHE_TIMEOUT_SECONDS and is answered uncached; the next ones skip Redis for a while."""
    redis = LocalRedis(dir=tmp_path)
    redis.start()
    gateway_server, backend = await fleet.start_gateway(redis_url=redis.url)
    image = (dev_set / read_rows(dev_set / "catalog.csv")[61]["image"]).read_bytes()
    request = search_pb2.SearchRequest(image=image, top_k=3)
    try:
        async with open_channel(gateway_server.address) as channel:
            gateway = search_pb2_grpc.SearchServiceStub(channel)
            await gateway.UpsertProducts(search_pb2.UpsertProductsRequest(products=[product_input("h-1", [image])]))
            await asyncio.sleep(WRITE_WINDOW_SECONDS + 0.1)
            await gateway.Search(request)
            assert (await gateway.Search(request)).cache_hit
            started = time.monotonic()
            await gateway.Search(search_pb2.SearchRequest(image=image, top_k=3, skip_cache=True))
            uncached = time.monotonic() - started

            os.kill(redis._proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            try:
                seconds = []
                for _ in range(5):
                    started = time.monotonic()
                    reply = await gateway.Search(request, timeout=5)
                    seconds.append(time.monotonic() - started)
                    assert not reply.cache_hit and reply.hits[0].product_id == "h-1"
            finally:
                os.kill(redis._proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
            assert max(seconds) < 1.0, seconds
            assert backend.cache.stats.errors > 0  # counted, for the cache-degraded alert
            print(
                f"redis SIGSTOP: searches {', '.join(f'{s * 1000:.0f}' for s in seconds)} ms "
                f"(uncached with Redis up: {uncached * 1000:.0f} ms)"
            )
            await gateway.DeleteProducts(search_pb2.DeleteProductsRequest(product_ids=["h-1"]))
    finally:
        await fleet.stop_extra()
        redis.stop()


async def test_a_password_protected_redis_caches_for_the_gateway_that_knows_the_password(
    fleet, dev_set, tmp_path
) -> None:
    redis = LocalRedis(dir=tmp_path, password="correct-horse")
    redis.start()
    assert ":correct-horse@" in redis.url and "***" in without_password(redis.url)
    image = (dev_set / read_rows(dev_set / "catalog.csv")[62]["image"]).read_bytes()
    request = search_pb2.SearchRequest(image=image, top_k=3)
    knows, knows_backend = await fleet.start_gateway(redis_url=redis.url)
    guesses, guesses_backend = await fleet.start_gateway(redis_url=redis.url.replace("correct-horse", "wrong"))
    try:
        async with open_channel(knows.address) as a, open_channel(guesses.address) as b:
            right, wrong = search_pb2_grpc.SearchServiceStub(a), search_pb2_grpc.SearchServiceStub(b)
            await right.Search(request)  # a new cache state: uncached for one window
            await asyncio.sleep(WRITE_WINDOW_SECONDS + 0.1)
            await right.Search(request)
            assert (await right.Search(request)).cache_hit
            for _ in range(2):  # refused by Redis: answered uncached, never an error
                assert not (await wrong.Search(request)).cache_hit
            assert guesses_backend.cache.stats.errors > 0 and knows_backend.cache.stats.errors == 0
    finally:
        await fleet.stop_extra()
        redis.stop()
