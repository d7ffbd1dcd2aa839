"""The Redis result cache: repeated searches hit it; catalog writes invalidate it."""

from __future__ import annotations

import asyncio

import pytest
from support import WRITE_WINDOW_SECONDS, product_input, read_rows

from imagesearch.v1 import search_pb2

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def images(dev_set):  # type: ignore[no-untyped-def]
    rows = read_rows(dev_set / "catalog.csv")[40:44]
    return [(dev_set / row["image"]).read_bytes() for row in rows]


async def test_a_repeated_search_is_a_cache_hit(gateway, images) -> None:
    await gateway.UpsertProducts(search_pb2.UpsertProductsRequest(products=[product_input("c-1", [images[0]])]))
    await asyncio.sleep(WRITE_WINDOW_SECONDS + 0.1)  # the catalog's cache state may be new: one window uncached
    request = search_pb2.SearchRequest(image=images[0], top_k=5)
    first = await gateway.Search(request)
    second = await gateway.Search(request)
    assert not first.cache_hit and second.cache_hit
    assert [h.product_id for h in second.hits] == [h.product_id for h in first.hits]
    assert [h.score for h in second.hits] == pytest.approx([h.score for h in first.hits])
    assert second.model == first.model
    different = await gateway.Search(search_pb2.SearchRequest(image=images[0], top_k=4))
    assert not different.cache_hit  # another request is another cache entry


async def test_an_upsert_invalidates_cached_answers(gateway, images) -> None:
    request = search_pb2.SearchRequest(image=images[1], top_k=5)
    await gateway.Search(request)
    assert (await gateway.Search(request)).cache_hit
    await gateway.UpsertProducts(search_pb2.UpsertProductsRequest(products=[product_input("c-2", [images[1]])]))
    after = await gateway.Search(request)
    assert not after.cache_hit
    assert after.hits[0].product_id == "c-2"  # the new product is visible as soon as the upsert returned


async def test_a_deleted_product_never_comes_back(gateway, images) -> None:
    await gateway.UpsertProducts(search_pb2.UpsertProductsRequest(products=[product_input("c-3", [images[2]])]))
    request = search_pb2.SearchRequest(image=images[2], top_k=5)
    assert (await gateway.Search(request)).hits[0].product_id == "c-3"
    assert (await gateway.Search(request)).cache_hit
    reply = await gateway.DeleteProducts(search_pb2.DeleteProductsRequest(product_ids=["c-3", "c-never-existed"]))
    assert list(reply.deleted) == ["c-3"] and list(reply.not_found) == ["c-never-existed"]
    for _ in range(3):
        again = await gateway.Search(request)
        assert "c-3" not in {h.product_id for h in again.hits}
    more_like = await gateway.Search(search_pb2.SearchRequest(product_id="c-1", top_k=50))
    assert "c-3" not in {h.product_id for h in more_like.hits}


async def test_skip_cache_bypasses_the_cache(gateway, images) -> None:
    request = search_pb2.SearchRequest(image=images[3], top_k=5)
    await gateway.Search(request)
    assert not (await gateway.Search(search_pb2.SearchRequest(image=images[3], top_k=5, skip_cache=True))).cache_hit
