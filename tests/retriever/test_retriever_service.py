"""The retriever served in-process on port 0, over a real grpc.aio channel, against a real Milvus."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pymilvus import MilvusClient

from imagesearch.common.server import ServiceServer
from imagesearch.stack.ports import free_port
from imagesearch.v1 import common_pb2, embedder_pb2, retriever_pb2, retriever_pb2_grpc
from imagesearch_retriever.app import SERVICE_NAME, build_server
from imagesearch_retriever.milvus.schema import heads_name
from imagesearch_retriever.settings import RetrieverSettings

pytestmark = pytest.mark.asyncio(loop_scope="session")

DIM = 1280
MODEL = common_pb2.ModelInfo(name="effnet-lite0", version="1", dimension=DIM)
SMALL = common_pb2.ModelInfo(name="tiny", version="2024.1", dimension=64)
RNG = np.random.default_rng(20240601)


def unit(dim: int = DIM) -> np.ndarray:
    v = RNG.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, noise: float) -> np.ndarray:
    w = v + noise * unit(v.shape[0])
    return (w / np.linalg.norm(w)).astype(np.float32)


def emb(v: np.ndarray) -> embedder_pb2.Embedding:
    return embedder_pb2.Embedding(values=v.tolist())


@dataclass
class Item:
    product: common_pb2.Product
    vectors: list[np.ndarray]
    uris: list[str] = field(default_factory=list)

    def indexed(self) -> retriever_pb2.IndexedProduct:
        return retriever_pb2.IndexedProduct(
            product=self.product,
            images=[retriever_pb2.IndexedImage(uri=u, vector=emb(v)) for u, v in zip(self.uris, self.vectors)],
        )


def make_catalog() -> dict[str, Item]:
    categories = ["shoes", "bags", "hats", "shirts"]
    brands = ["acme", "globex", "initech"]
    colors = ["red", "blue", "green"]
    items: dict[str, Item] = {}
    for i in range(40):
        pid = f"p{i:02d}"
        product = common_pb2.Product(
            product_id=pid,
            title=f"Product {i}",
            category=categories[i % 4],
            brand=brands[i % 3],
            price=float(5 * i),
            attributes={"color": colors[i % 3], "size": str(36 + i % 5)},
        )
        items[pid] = Item(product, [unit()], [f"s3://catalog/{pid}/0.jpg"])
    # One product with three images, all close to one base vector.
    base = unit()
    vectors = [near(base, 0.3), near(base, 0.05), near(base, 0.3)]
    items["multi"] = Item(
        common_pb2.Product(
            product_id="multi",
            title="Three photos",
            category="shoes",
            brand="acme",
            price=42.0,
            attributes={"color": "black"},
        ),
        vectors,
        [f"s3://catalog/multi/{k}.jpg" for k in range(3)],
    )
    items["multi"].base = base  # type: ignore[attr-defined]
    # A "twin" shares an image with p01: more-like-this from p01 finds it first.
    items["twin"] = Item(
        common_pb2.Product(product_id="twin", title="Twin", category="bags", brand="globex", price=7.0),
        [items["p01"].vectors[0].copy()],
        ["s3://catalog/twin/0.jpg"],
    )
    return items


@dataclass
class Env:
    server: ServiceServer
    stub: retriever_pb2_grpc.RetrieverServiceStub
    health: health_pb2_grpc.HealthStub
    items: dict[str, Item]
    prefix: str
    milvus_uri: str
    spans: InMemorySpanExporter


def settings_for(milvus_uri: str, prefix: str, **extra: str) -> RetrieverSettings:
    env = {
        "RETRIEVER_HOST": "127.0.0.1",
        "RETRIEVER_PORT": "0",
        "RETRIEVER_METRICS_PORT": "0",
        "MILVUS_URI": milvus_uri,
        "RETRIEVER_COLLECTION_PREFIX": prefix,
        **extra,
    }
    return RetrieverSettings.from_env(env)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env(milvus_uri: str) -> AsyncIterator[Env]:
    prefix = f"svc{uuid.uuid4().hex[:8]}"
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    server = build_server(settings_for(milvus_uri, prefix), provider)
    await server.start()
    await server.wait_until_serving(timeout=60)
    async with grpc.aio.insecure_channel(
        server.address, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        items = make_catalog()
        response = await stub.Upsert(
            retriever_pb2.UpsertRequest(model=MODEL, products=[i.indexed() for i in items.values()])
        )
        assert (response.products, response.images) == (len(items), sum(len(i.vectors) for i in items.values()))
        yield Env(server, stub, health_pb2_grpc.HealthStub(channel), items, prefix, milvus_uri, spans)
    await server.stop(1)


async def search(
    env: Env,
    vector: np.ndarray | None = None,
    *,
    product_id: str | None = None,
    top_k: int = 10,
    filter: common_pb2.Filter | None = None,
    min_score: float = -1.0,
    model: common_pb2.ModelInfo = MODEL,
) -> list[common_pb2.SearchHit]:
    request = retriever_pb2.VectorSearchRequest(model=model, top_k=top_k, min_score=min_score, filter=filter)
    if vector is not None:
        request.vector.CopyFrom(emb(vector))
    if product_id is not None:
        request.product_id = product_id
    return list((await env.stub.Search(request)).hits)


async def expect_error(call: object, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    return info.value.details() or ""


async def test_health_is_serving_after_connect(env: Env) -> None:
    for service in ("", SERVICE_NAME):
        reply = await env.health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_exact_vector_finds_its_product_at_score_one(env: Env) -> None:
    item = env.items["p07"]
    hits = await search(env, item.vectors[0], top_k=5)
    assert hits[0].product_id == "p07"
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert hits[0].image_uri == item.uris[0]
    assert (hits[0].title, hits[0].category, hits[0].brand, hits[0].price) == ("Product 7", "shirts", "globex", 35.0)
    assert dict(hits[0].attributes) == {"color": "blue", "size": "38"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def test_several_vectors_find_each_product_at_its_best_over_them(env: Env) -> None:
    """`any_of`: the gateway's zoom tiles, one search for all their views."""
    first, second = env.items["p03"].vectors[0], env.items["p11"].vectors[0]
    request = retriever_pb2.VectorSearchRequest(model=MODEL, top_k=10, min_score=-1.0)
    request.any_of.vectors.extend([emb(first), emb(second)])
    hits = list((await env.stub.Search(request)).hits)
    assert {h.product_id for h in hits[:2]} == {"p03", "p11"} and hits[1].score == pytest.approx(1.0, abs=1e-3)
    ids = [h.product_id for h in hits]
    assert len(ids) == len(set(ids)) == 10
    alone = {h.product_id: h.score for v in (first, second) for h in await search(env, v, top_k=10)}
    for h in hits:  # each product's score is its best over the two vectors
        assert h.score >= alone.get(h.product_id, -1.0) - 1e-4
    request.any_of.vectors.add().values.extend([0.5, 0.5])
    assert "any_of vector 2" in await expect_error(env.stub.Search(request), grpc.StatusCode.INVALID_ARGUMENT)


async def test_one_hit_per_product_with_its_best_image(env: Env) -> None:
    multi = env.items["multi"]
    hits = await search(env, multi.base, top_k=10)  # type: ignore[attr-defined]
    ids = [h.product_id for h in hits]
    assert ids.count("multi") == 1 and ids[0] == "multi"
    assert len(ids) == len(set(ids)) == 10
    best = int(np.argmax([float(v @ multi.base) for v in multi.vectors]))  # type: ignore[attr-defined]
    assert hits[0].image_uri == multi.uris[best]
    assert hits[0].score == pytest.approx(float(multi.vectors[best] @ multi.base), abs=1e-3)  # type: ignore[attr-defined]


def matching(env: Env, predicate) -> set[str]:  # type: ignore[no-untyped-def]
    return {pid for pid, item in env.items.items() if predicate(item.product)}


@pytest.mark.parametrize(
    "spec, predicate",
    [
        (common_pb2.Filter(categories=["bags", "hats"]), lambda p: p.category in ("bags", "hats")),
        (common_pb2.Filter(price=common_pb2.PriceRange(min=20, max=60)), lambda p: 20 <= p.price <= 60),
        (common_pb2.Filter(price=common_pb2.PriceRange(max=10)), lambda p: p.price <= 10),
        (common_pb2.Filter(brands=["initech"]), lambda p: p.brand == "initech"),
        (
            common_pb2.Filter(attributes=[common_pb2.AttributeFilter(key="color", values=["red", "black"])]),
            lambda p: p.attributes.get("color") in ("red", "black"),
        ),
        (
            common_pb2.Filter(
                categories=["shoes"],
                brands=["acme"],
                attributes=[common_pb2.AttributeFilter(key="size", values=["36", "40"])],
            ),
            lambda p: p.category == "shoes" and p.brand == "acme" and p.attributes.get("size") in ("36", "40"),
        ),
        (common_pb2.Filter(categories=["no-such-category"]), lambda p: False),
    ],
    ids=["categories", "price-range", "price-max", "brand", "attribute", "combined", "nothing"],
)
async def test_filters(env: Env, spec: common_pb2.Filter, predicate) -> None:  # type: ignore[no-untyped-def]
    hits = await search(env, unit(), top_k=100, filter=spec)
    expected = matching(env, predicate)
    assert {h.product_id for h in hits} == expected
    assert len(hits) == len(expected)


async def test_min_score_cuts_weak_hits(env: Env) -> None:
    hits = await search(env, env.items["p11"].vectors[0], top_k=50, min_score=0.5)
    assert [h.product_id for h in hits] == ["p11"]
    everything = await search(env, env.items["p11"].vectors[0], top_k=100, min_score=-1.0)
    assert len(everything) >= len(env.items) and min(h.score for h in everything) < 0.5


async def test_more_like_this_excludes_itself(env: Env) -> None:
    hits = await search(env, product_id="p01", top_k=10)
    ids = [h.product_id for h in hits]
    assert "p01" not in ids
    assert ids[0] == "twin" and hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert len(ids) == len(set(ids)) == 10
    filtered = await search(env, product_id="p01", top_k=10, filter=common_pb2.Filter(categories=["hats"]))
    assert filtered and all(env.items[h.product_id].product.category == "hats" for h in filtered)


async def test_more_like_this_of_unknown_product_is_not_found(env: Env) -> None:
    details = await expect_error(search(env, product_id="ghost"), grpc.StatusCode.NOT_FOUND)
    assert "ghost" in details


async def test_upsert_replaces_older_images(env: Env) -> None:
    old_a, old_b, new = unit(), unit(), unit()
    # Categories and prices no other test filters on, so test order does not matter.
    product = common_pb2.Product(product_id="repl", title="v1", category="tmp-a", price=1e6)
    first = Item(product, [old_a, old_b], ["old/a.jpg", "old/b.jpg"])
    await env.stub.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=[first.indexed()]))
    hits = await search(env, old_b, top_k=1)
    assert hits[0].product_id == "repl" and hits[0].image_uri == "old/b.jpg"

    product2 = common_pb2.Product(product_id="repl", title="v2", category="tmp-b", price=2e6)
    second = Item(product2, [new], ["new/c.jpg"])
    response = await env.stub.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=[second.indexed()]))
    assert (response.products, response.images) == (1, 1)
    for removed in (old_a, old_b):
        assert "repl" not in {h.product_id for h in await search(env, removed, top_k=5, min_score=0.5)}
    hits = await search(env, new, top_k=1)
    assert (hits[0].product_id, hits[0].image_uri, hits[0].title) == ("repl", "new/c.jpg", "v2")
    got = await env.stub.Get(retriever_pb2.GetRequest(model=MODEL, product_id="repl"))
    assert (list(got.image_uris), got.category, got.price) == (["new/c.jpg"], "tmp-b", 2e6)


async def test_deleted_product_never_comes_back(env: Env) -> None:
    vector = unit()
    item = Item(
        common_pb2.Product(product_id="doomed", category="tmp-doomed", price=1e6),
        [vector, near(vector, 0.1)],
        ["d/0", "d/1"],
    )
    await env.stub.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=[item.indexed()]))
    assert (await search(env, vector, top_k=1))[0].product_id == "doomed"

    response = await env.stub.Delete(retriever_pb2.DeleteRequest(model=MODEL, product_ids=["doomed", "never-was"]))
    assert (list(response.deleted), list(response.not_found)) == (["doomed"], ["never-was"])
    # Immediately, in the very next calls: no eventual-consistency window.
    assert "doomed" not in {h.product_id for h in await search(env, vector, top_k=10)}
    assert "doomed" not in {
        h.product_id for h in await search(env, vector, top_k=10, filter=common_pb2.Filter(categories=["tmp-doomed"]))
    }
    await expect_error(
        env.stub.Get(retriever_pb2.GetRequest(model=MODEL, product_id="doomed")), grpc.StatusCode.NOT_FOUND
    )
    again = await env.stub.Delete(retriever_pb2.DeleteRequest(model=MODEL, product_ids=["doomed"]))
    assert (list(again.deleted), list(again.not_found)) == ([], ["doomed"])


async def test_get(env: Env) -> None:
    got = await env.stub.Get(retriever_pb2.GetRequest(model=MODEL, product_id="multi"))
    assert got.product_id == "multi" and got.title == "Three photos" and got.price == 42.0
    assert list(got.image_uris) == env.items["multi"].uris
    assert dict(got.attributes) == {"color": "black"}
    details = await expect_error(
        env.stub.Get(retriever_pb2.GetRequest(model=MODEL, product_id="nope-42")), grpc.StatusCode.NOT_FOUND
    )
    assert "nope-42" in details


HOSTILE = ['" or 1==1 or "', 'a"b', "a\\b", "\\", "x\\", '") || (price >= 0', "line\nbreak", "ünï😀", "it's", ""]


async def test_hostile_filter_strings_are_safe(env: Env) -> None:
    vector = unit()
    for value in HOSTILE:
        cases = [
            (common_pb2.Filter(categories=[value]), lambda h, value=value: h.category == value),
            (common_pb2.Filter(brands=[value, "acme"]), lambda h, value=value: h.brand in (value, "acme")),
            (
                common_pb2.Filter(attributes=[common_pb2.AttributeFilter(key="color", values=[value])]),
                lambda h, value=value: h.attributes.get("color") == value,
            ),
        ]
        for spec, ok in cases:
            hits = await search(env, vector, top_k=100, filter=spec)
            assert all(ok(h) for h in hits), (value, spec)
    acme = await search(env, vector, top_k=100, filter=common_pb2.Filter(brands=['" or 1==1 or "', "acme"]))
    assert {h.product_id for h in acme} == matching(env, lambda p: p.brand == "acme")

    for spec, words in [
        (common_pb2.Filter(categories=["nul\x00"]), "non-printable"),
        (common_pb2.Filter(categories=["x" * 300]), "bytes"),
        (
            common_pb2.Filter(
                attributes=[common_pb2.AttributeFilter(key='color"] || true || attributes["x', values=["a"])]
            ),
            "attribute filter key",
        ),
        (common_pb2.Filter(price=common_pb2.PriceRange(min=5, max=1)), "must not exceed"),
        (common_pb2.Filter(price=common_pb2.PriceRange(min=float("nan"))), "finite"),
    ]:
        details = await expect_error(search(env, vector, filter=spec), grpc.StatusCode.INVALID_ARGUMENT)
        assert words in details
    reply = await env.health.Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_request_validation(env: Env) -> None:
    details = await expect_error(search(env, unit(), top_k=100000), grpc.StatusCode.INVALID_ARGUMENT)
    assert details == "top_k must be between 1 and 100, got 100000"
    await expect_error(search(env, unit(), min_score=1.5), grpc.StatusCode.INVALID_ARGUMENT)
    details = await expect_error(search(env, unit(32)), grpc.StatusCode.INVALID_ARGUMENT)
    assert "1280" in details
    await expect_error(search(env), grpc.StatusCode.INVALID_ARGUMENT)  # neither vector nor product_id
    await expect_error(search(env, np.zeros(DIM, np.float32)), grpc.StatusCode.INVALID_ARGUMENT)
    await expect_error(search(env, unit(), model=common_pb2.ModelInfo()), grpc.StatusCode.INVALID_ARGUMENT)
    # Default top_k is 10.
    assert len(await search(env, unit(), top_k=0)) == 10
    bad = Item(common_pb2.Product(product_id="bad"), [unit(100)], ["x"])
    details = await expect_error(
        env.stub.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=[bad.indexed()])),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "dimension is 1280" in details
    no_images = retriever_pb2.IndexedProduct(product=common_pb2.Product(product_id="bare"))
    await expect_error(
        env.stub.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=[no_images])),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_models_never_mix(env: Env) -> None:
    unknown = common_pb2.ModelInfo(name="never-written", version="1", dimension=DIM)
    assert await search(env, unit(), model=unknown) == []  # an empty catalog, not an error

    small = unit(64)
    twin = Item(common_pb2.Product(product_id="p03", title="small model's p03", category="tiny"), [small], ["t/0"])
    await env.stub.Upsert(retriever_pb2.UpsertRequest(model=SMALL, products=[twin.indexed()]))
    hits = await search(env, small, model=SMALL)
    assert [(h.product_id, h.title) for h in hits] == [("p03", "small model's p03")]
    big = await env.stub.Get(retriever_pb2.GetRequest(model=MODEL, product_id="p03"))
    assert big.title == "Product 3"
    await expect_error(search(env, unit(), model=SMALL), grpc.StatusCode.INVALID_ARGUMENT)  # 1280-d into a 64-d model

    client = MilvusClient(uri=env.milvus_uri)
    try:
        names = sorted(n for n in client.list_collections() if n.startswith(env.prefix + "_"))
    finally:
        client.close()
    rows = [f"{env.prefix}_effnet_lite0_v1_1280d_s2", f"{env.prefix}_tiny_v2024_1_64d_s2"]
    assert names == sorted([*rows, *(heads_name(name) for name in rows)])


async def test_milvus_calls_are_traced(env: Env) -> None:
    env.spans.clear()
    await search(env, unit(), top_k=3)
    spans = {s.name: s for s in env.spans.get_finished_spans()}
    assert "milvus.search" in spans
    milvus_span = spans["milvus.search"]
    assert milvus_span.attributes["milvus.collection"] == f"{env.prefix}_effnet_lite0_v1_1280d_s2"
    server_spans = [s for s in spans.values() if s.kind.name == "SERVER"]
    assert server_spans and milvus_span.parent is not None
    assert milvus_span.parent.span_id == server_spans[0].context.span_id


async def test_dead_milvus_stays_not_serving_and_fails_unavailable() -> None:
    settings = settings_for(f"http://127.0.0.1:{free_port()}", "dead", RETRIEVER_TIMEOUT_SECONDS="1")
    server = build_server(settings, TracerProvider())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            await asyncio.sleep(1.5)
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            request = retriever_pb2.VectorSearchRequest(model=MODEL, vector=emb(unit()))
            details = await expect_error(stub.Search(request), grpc.StatusCode.UNAVAILABLE)
            assert "milvus unavailable at http://127.0.0.1:" in details
            await expect_error(
                stub.Get(retriever_pb2.GetRequest(model=MODEL, product_id="x")), grpc.StatusCode.UNAVAILABLE
            )
    finally:
        await server.stop(0)
