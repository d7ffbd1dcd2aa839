"""A write its caller gave up on may still land: nothing it removed ever comes back, from the cache of
any gateway or from Milvus."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from support import WRITE_WINDOW_SECONDS, open_channel, product_input, read_rows

from imagesearch.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="session")
# The writer's deadline for the retriever: enough for the steps before the commit (the retriever
# commits nothing once it has passed), too little for the commit, which is held at Milvus.
GIVE_UP_SECONDS = 0.5
# The writer's CACHE_WRITE_WINDOW_SECONDS: longer than the held commit takes to land, as it must be.
WINDOW_SECONDS = 3.0


async def test_a_deleted_product_never_comes_back_after_its_delete_timed_out(fleet, gateway, dev_set) -> None:
    """The writer is a gateway whose retriever deadline (0.5 s) passes while the delete's commit is in
    flight at Milvus (held 1 s here, as a slow Milvus would); the reader is another gateway, with the cache,
    sharing Redis. Before the fix the reader cached the pre-delete answer under the generation the
    writer had already advanced, and served the deleted product for the whole TTL."""
    client = fleet.retriever._backend.store._client
    insert = client.insert

    def slow_insert(name, rows, **kwargs):  # type: ignore[no-untyped-def]
        if any(row.get("deleted") for row in rows):
            time.sleep(GIVE_UP_SECONDS + 0.5)  # the commit is in flight at Milvus when the caller gives up
        return insert(name, rows, **kwargs)

    writer_server, _ = await fleet.start_gateway(
        retrieve_timeout_seconds=GIVE_UP_SECONDS, cache_write_window_seconds=WINDOW_SECONDS
    )
    image = (dev_set / read_rows(dev_set / "catalog.csv")[90]["image"]).read_bytes()
    catalog = "abandoned"
    request = search_pb2.SearchRequest(catalog=catalog, image=image, top_k=3)

    async def present() -> bool:
        reply = await gateway.Search(request, timeout=10)
        return any(hit.product_id == "gone" for hit in reply.hits)

    client.insert = slow_insert
    try:
        async with open_channel(writer_server.address) as channel:
            writer = search_pb2_grpc.SearchServiceStub(channel)
            for _attempt in range(5):
                await gateway.UpsertProducts(
                    search_pb2.UpsertProductsRequest(catalog=catalog, products=[product_input("gone", [image])]),
                    timeout=30,
                )
                await asyncio.sleep(WRITE_WINDOW_SECONDS + 0.1)  # a new cache state starts uncached
                assert await present() and await present()  # the second answer from the cache
                try:
                    await writer.DeleteProducts(
                        search_pb2.DeleteProductsRequest(catalog=catalog, product_ids=["gone"]), timeout=10
                    )
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err
                    break
            else:
                pytest.skip("every delete finished in time: the race could not be staged here")

            # While the abandoned delete lands, and past the write window: once the product is gone,
            # it stays gone.
            seen: list[bool] = []
            deadline = time.monotonic() + WINDOW_SECONDS + 1.0
            while time.monotonic() < deadline:
                seen.append(await present())
                await asyncio.sleep(0.02)
            assert not seen[-1], "the deleted product is still served"
            first_gone = seen.index(False)
            assert not any(seen[first_gone:]), f"the deleted product came back: {seen}"
            with pytest.raises(grpc.aio.AioRpcError) as lookup:  # gone from Milvus too
                await gateway.GetProduct(search_pb2.GetProductRequest(catalog=catalog, product_id="gone"))
            assert lookup.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        client.insert = insert
        await gateway.DeleteCatalog(search_pb2.DeleteCatalogRequest(catalog=catalog), timeout=30)
        await fleet.stop_extra()
