"""Two retriever processes on one Milvus, sharing write horizons in Redis (RETRIEVER_REDIS_URL):
what one writes, the other reads at once, never an older version; and still so when Redis is
emptied, killed or restarted under them (their reads fall back to Strong)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis
from support import ServiceProcess, open_channel

from imagesearch.stack.redis import LocalRedis
from imagesearch.v1 import common_pb2, embedder_pb2, retriever_pb2, retriever_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="session")

DIM = 64
MODEL = common_pb2.ModelInfo(name="horizon", version="1", dimension=DIM)
SHARED_REDIS = "redis://127.0.0.1:6379/0"  # the machine's Redis, under a namespace of our own
ROUNDS = 6
RNG = np.random.default_rng(11)


def unit() -> list[float]:
    v = RNG.standard_normal(DIM)
    return (v / np.linalg.norm(v)).tolist()


@dataclass
class Replicas:
    stubs: list[retriever_pb2_grpc.RetrieverServiceStub]
    namespace: str


@contextlib.asynccontextmanager
async def replicas(milvus_uri: str, redis_url: str, logs: Path) -> AsyncIterator[Replicas]:
    """Two retrievers, as two pods of one Deployment: one collection prefix, one Redis namespace."""
    suffix = uuid.uuid4().hex[:10]
    env = {
        "MILVUS_URI": milvus_uri,
        "RETRIEVER_COLLECTION_PREFIX": f"h{suffix}",
        "RETRIEVER_REDIS_URL": redis_url,
        "RETRIEVER_REDIS_NAMESPACE": f"test-{suffix}",
    }
    a, b = ServiceProcess("retriever", env, logs / "a"), ServiceProcess("retriever", env, logs / "b")
    (logs / "a").mkdir(parents=True, exist_ok=True)
    (logs / "b").mkdir(parents=True, exist_ok=True)
    async with a, b, open_channel(a.address) as ca, open_channel(b.address) as cb:
        yield Replicas([retriever_pb2_grpc.RetrieverServiceStub(c) for c in (ca, cb)], env["RETRIEVER_REDIS_NAMESPACE"])


def product(pid: str, round_: int, vector: list[float]) -> retriever_pb2.IndexedProduct:
    return retriever_pb2.IndexedProduct(
        product=common_pb2.Product(product_id=pid, title=f"v{round_}", category="c"),
        images=[retriever_pb2.IndexedImage(uri=f"{pid}/{round_}", vector=embedder_pb2.Embedding(values=vector))],
    )


async def read_back(stub: retriever_pb2_grpc.RetrieverServiceStub, pid: str, vector: list[float]) -> tuple[str, str]:
    """(title by Get, title of the search's hit for `pid` by its own vector); "" when not there."""
    try:
        title = (await stub.Get(retriever_pb2.GetRequest(model=MODEL, product_id=pid), timeout=30)).title
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND, err
        title = ""
    reply = await stub.Search(
        retriever_pb2.VectorSearchRequest(
            model=MODEL, vector=embedder_pb2.Embedding(values=vector), top_k=5, min_score=-1.0
        ),
        timeout=30,
    )
    found = [hit.title for hit in reply.hits if hit.product_id == pid]
    return title, found[0] if found else ""


async def write_then_read(replicas: Replicas, round_: int) -> None:
    """One round: write through one replica (alternately), read through the other at once. Every
    few rounds a delete: the product must be gone from the other at once."""
    writer, reader = replicas.stubs[round_ % 2], replicas.stubs[1 - round_ % 2]
    pid = f"p{round_ % 3}"  # a few products, each rewritten many times
    vector = unit()
    if round_ % 5 == 4:
        await writer.Delete(retriever_pb2.DeleteRequest(model=MODEL, product_ids=[pid]), timeout=30)
        assert await read_back(reader, pid, vector) == ("", ""), f"round {round_}: {pid} deleted, still read"
        return
    await writer.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=[product(pid, round_, vector)]), timeout=30)
    assert await read_back(reader, pid, vector) == (f"v{round_}", f"v{round_}"), f"round {round_}: stale read"


async def test_a_write_through_one_replica_is_read_at_once_through_the_other(milvus_uri: str, tmp_path: Path) -> None:
    async with replicas(milvus_uri, SHARED_REDIS, tmp_path) as fleet:
        for round_ in range(ROUNDS):
            await write_then_read(fleet, round_)
        # The writes recorded the catalog's horizon: reads used it rather than Strong.
        state = redis.Redis.from_url(SHARED_REDIS).hgetall(f"{fleet.namespace}:retriever:horizon:{{}}")
        assert b"h" in state and b"s" not in state, state
        redis.Redis.from_url(SHARED_REDIS).delete(f"{fleet.namespace}:retriever:horizon:{{}}")


async def write_when_redis_is_back(replicas: Replicas, round_: int, within: float = 20.0) -> None:
    """After a Redis outage writes fail UNAVAILABLE (nothing changed) until a health probe finds it back."""
    deadline = time.monotonic() + within
    while True:
        try:
            await write_then_read(replicas, round_)
            return
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE and "redis" in (err.details() or ""), err
            assert time.monotonic() < deadline, "writes never came back after Redis did"
            await asyncio.sleep(0.5)


async def test_reads_are_never_stale_when_redis_is_emptied_killed_or_restarted(milvus_uri: str, tmp_path: Path) -> None:
    private = LocalRedis(dir=tmp_path / "redis")  # private: the machine's Redis serves others
    private.start()
    try:
        async with replicas(milvus_uri, private.url, tmp_path) as fleet:
            for round_ in range(3):
                await write_then_read(fleet, round_)

            # Emptied: the horizon is gone. A read finding none is Strong, and relearns it (a fresh
            # Milvus timestamp through a placeholder): a catalog only read is soon fast again.
            redis.Redis.from_url(private.url).flushall()
            await read_back(fleet.stubs[1], "p0", unit())
            state = redis.Redis.from_url(private.url).hgetall(f"{fleet.namespace}:retriever:horizon:{{}}")
            assert b"h" in state and b"s" not in state, state
            for round_ in range(10, 13):
                await write_then_read(fleet, round_)

            # Killed: reads go on (Strong); a write fails UNAVAILABLE, having changed nothing.
            stub = fleet.stubs[0]
            before = await read_back(fleet.stubs[1], "p0", unit())
            private.kill()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=[product("p0", -1, unit())]))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            for reader in fleet.stubs:
                title, _ = await read_back(reader, "p0", unit())
                assert title == before[0]

            # Back, empty, on the same address: writes resume and every read is fresh again.
            private.start()
            for round_ in (20, 21):  # each replica finds Redis back through its own health probe
                await write_when_redis_is_back(fleet, round_)
            for round_ in range(22, 24):
                await write_then_read(fleet, round_)
            state = redis.Redis.from_url(private.url).hgetall(f"{fleet.namespace}:retriever:horizon:{{}}")
            assert b"h" in state, state
    finally:
        private.stop()
