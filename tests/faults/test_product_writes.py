"""A product is always one whole version: under concurrent writers on two retriever replicas, and when a
write fails between its steps. Checked in Milvus' rows as well as through Get and filtered Search."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from pymilvus import MilvusClient

from imagesearch.common.convert import model_from_pb
from imagesearch.common.errors import Unavailable
from imagesearch.common.server import ServiceServer
from imagesearch.v1 import common_pb2, embedder_pb2, retriever_pb2, retriever_pb2_grpc
from imagesearch_retriever.app import RetrieverBackend, build_server
from imagesearch_retriever.milvus import schema
from imagesearch_retriever.milvus.versions import Head, live_versions
from imagesearch_retriever.settings import RetrieverSettings

pytestmark = pytest.mark.asyncio(loop_scope="session")

DIM = 64
MODEL = common_pb2.ModelInfo(name="writes", version="1", dimension=DIM)
RNG = np.random.default_rng(7)
ROUNDS = 100
PAIRS_IN_FLIGHT = 20


def unit() -> list[float]:
    v = RNG.standard_normal(DIM)
    return (v / np.linalg.norm(v)).tolist()


def version_of(pid: str, images: int, category: str) -> retriever_pb2.IndexedProduct:
    """A product with `images` images, all of `category`: what one writer sends."""
    return retriever_pb2.IndexedProduct(
        product=common_pb2.Product(product_id=pid, title=f"{pid} {category}", category=category, price=float(images)),
        images=[
            retriever_pb2.IndexedImage(uri=f"{category}/{i}", vector=embedder_pb2.Embedding(values=unit()))
            for i in range(images)
        ],
    )


@dataclass
class Replicas:
    servers: list[ServiceServer]
    stubs: list[retriever_pb2_grpc.RetrieverServiceStub]
    prefix: str
    milvus_uri: str


@pytest.fixture
async def replicas(milvus_uri: str, unique_prefix: str) -> AsyncIterator[Replicas]:
    """Two retrievers on one Milvus and one collection prefix, as two pods of a Deployment."""
    settings = RetrieverSettings.from_env(
        {
            "RETRIEVER_HOST": "127.0.0.1",
            "RETRIEVER_PORT": "0",
            "RETRIEVER_METRICS_PORT": "0",
            "MILVUS_URI": milvus_uri,
            "RETRIEVER_COLLECTION_PREFIX": unique_prefix,
        }
    )
    servers = [build_server(settings, TracerProvider()) for _ in range(2)]
    channels = []
    for server in servers:
        await server.start()
        await server.wait_until_serving(timeout=60)
        channels.append(grpc.aio.insecure_channel(server.address))
    try:
        yield Replicas(
            servers, [retriever_pb2_grpc.RetrieverServiceStub(c) for c in channels], unique_prefix, milvus_uri
        )
    finally:
        for channel in channels:
            await channel.close()
        for server in servers:
            await server.stop(1)


def milvus_rows(replicas: Replicas, pids: list[str]) -> dict[str, set[tuple[str, int]]]:
    """Per product, the (category, row count) of every version whose rows are in Milvus and visible."""
    name = schema.collection_name(replicas.prefix, model_from_pb(MODEL))
    client = MilvusClient(uri=replicas.milvus_uri)
    try:
        filter_ = "product_id in [" + ", ".join(f'"{p}"' for p in pids) + "]"
        heads = client.query(
            schema.heads_name(name),
            filter=filter_,
            output_fields=["product_id", "version", "deleted"],
            consistency_level="Strong",
        )
        rows = client.query(
            name,
            filter=filter_,
            output_fields=["product_id", "version", "category"],
            consistency_level="Strong",
            limit=16384,
        )
    finally:
        client.close()
    live = live_versions(Head(h["product_id"], int(h["version"]), bool(h["deleted"])) for h in heads)
    seen: dict[str, dict[int, list[str]]] = {}
    for row in rows:
        if live.get(row["product_id"]) == int(row["version"]):
            seen.setdefault(row["product_id"], {}).setdefault(int(row["version"]), []).append(row["category"])
    return {
        pid: {(categories[0], len(categories)) for categories in by_version.values() if len(set(categories)) == 1}
        | {("MIXED", len(c)) for c in by_version.values() if len(set(c)) > 1}
        for pid, by_version in seen.items()
    }


async def test_two_concurrent_writers_of_a_product_always_leave_exactly_one_version(replicas: Replicas) -> None:
    a, b = replicas.stubs
    pids = [f"w{i:03d}" for i in range(ROUNDS)]
    gate = asyncio.Semaphore(PAIRS_IN_FLIGHT)

    async def round_of(pid: str) -> None:
        async with gate:
            await asyncio.gather(
                a.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=[version_of(pid, 3, "a")]), timeout=60),
                b.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=[version_of(pid, 5, "b")]), timeout=60),
            )

    await asyncio.gather(*(round_of(pid) for pid in pids))

    # In Milvus: every product has exactly one visible version, whole (3 rows of a, or 5 of b).
    stored = milvus_rows(replicas, pids)
    assert set(stored) == set(pids)
    for pid, versions in stored.items():
        assert versions in ({("a", 3)}, {("b", 5)}), (pid, versions)

    # Through the API, from either replica: the same version everywhere.
    for pid in pids:
        [(category, count)] = stored[pid]
        for stub in (a, b):
            product = await stub.Get(retriever_pb2.GetRequest(model=MODEL, product_id=pid))
            assert product.category == category and len(product.image_uris) == count
    for category in ("a", "b"):
        expected = {pid for pid, versions in stored.items() if next(iter(versions))[0] == category}
        reply = await a.Search(
            retriever_pb2.VectorSearchRequest(
                model=MODEL,
                vector=embedder_pb2.Embedding(values=unit()),
                top_k=100,
                filter=common_pb2.Filter(categories=[category]),
                min_score=-1.0,
            )
        )
        assert {hit.product_id for hit in reply.hits} == expected


async def test_a_write_that_fails_before_its_commit_leaves_the_old_version(replicas: Replicas) -> None:
    stub = replicas.stubs[0]
    backend: RetrieverBackend = replicas.servers[0]._backend  # type: ignore[attr-defined]
    store = backend.store
    await stub.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=[version_of("crash", 3, "a")]))

    def crash(*args: object) -> None:  # Milvus goes away after the rows, before the heads
        raise Unavailable("milvus unavailable: injected between the rows and the commit")

    original = store._commit
    store._commit = crash  # type: ignore[method-assign]
    try:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=[version_of("crash", 5, "b")]))
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        store._commit = original  # type: ignore[method-assign]

    assert milvus_rows(replicas, ["crash"]) == {"crash": {("a", 3)}}  # b's 5 rows are there, invisible
    product = await stub.Get(retriever_pb2.GetRequest(model=MODEL, product_id="crash"))
    assert product.category == "a" and len(product.image_uris) == 3
    for category, expected in (("a", ["crash"]), ("b", [])):
        reply = await stub.Search(
            retriever_pb2.VectorSearchRequest(
                model=MODEL,
                vector=embedder_pb2.Embedding(values=unit()),
                top_k=10,
                filter=common_pb2.Filter(categories=[category]),
                min_score=-1.0,
            )
        )
        assert [hit.product_id for hit in reply.hits] == expected


async def test_a_write_that_fails_after_its_commit_is_the_new_version(replicas: Replicas) -> None:
    stub = replicas.stubs[0]
    store = replicas.servers[0]._backend.store  # type: ignore[attr-defined]
    await stub.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=[version_of("late", 3, "a")]))

    def lost(*args: object) -> None:  # the clean-up of the old rows never happens
        raise Unavailable("injected after the commit")

    original = store._clean_up
    store._clean_up = lost  # type: ignore[method-assign]
    try:
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=[version_of("late", 5, "b")]))
    finally:
        store._clean_up = original  # type: ignore[method-assign]

    assert milvus_rows(replicas, ["late"]) == {"late": {("b", 5)}}  # a's old rows are there, invisible
    product = await stub.Get(retriever_pb2.GetRequest(model=MODEL, product_id="late"))
    assert product.category == "b" and len(product.image_uris) == 5
    reply = await stub.Search(
        retriever_pb2.VectorSearchRequest(
            model=MODEL,
            vector=embedder_pb2.Embedding(values=unit()),
            top_k=10,
            filter=common_pb2.Filter(categories=["a"]),
            min_score=-1.0,
        )
    )
    assert [hit.product_id for hit in reply.hits] == []  # never filterable by its old category


async def test_a_delete_reaches_the_collection_of_every_model_so_a_rollback_cannot_resurrect(
    replicas: Replicas,
) -> None:
    stub = replicas.stubs[0]
    rolled = common_pb2.ModelInfo(name="writes", version="2", dimension=DIM)
    for model in (MODEL, rolled):  # indexed under the old model, then re-indexed under the new one
        await stub.Upsert(retriever_pb2.UpsertRequest(model=model, products=[version_of("roll", 2, "a")]))
    reply = await stub.Delete(retriever_pb2.DeleteRequest(model=rolled, product_ids=["roll", "never"]))
    assert list(reply.deleted) == ["roll"] and list(reply.not_found) == ["never"]
    for model in (MODEL, rolled):  # a rollback to the old model finds nothing either
        with pytest.raises(grpc.aio.AioRpcError) as lookup:
            await stub.Get(retriever_pb2.GetRequest(model=model, product_id="roll"))
        assert lookup.value.code() == grpc.StatusCode.NOT_FOUND
