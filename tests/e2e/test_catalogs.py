"""Named catalogs are independent product sets (per shop, per evaluation run)."""

from __future__ import annotations

import grpc
import pytest
from support import product_input, read_rows

from imagesearch.v1 import search_pb2

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_named_catalog_is_isolated_and_can_be_dropped(gateway, dev_set) -> None:
    image = (dev_set / read_rows(dev_set / "catalog.csv")[80]["image"]).read_bytes()
    reply = await gateway.UpsertProducts(
        search_pb2.UpsertProductsRequest(catalog="shop_two", products=[product_input("k-1", [image])])
    )
    assert reply.results[0].ok
    inside = await gateway.Search(search_pb2.SearchRequest(catalog="shop_two", image=image, top_k=5))
    assert [h.product_id for h in inside.hits] == ["k-1"]
    default = await gateway.Search(search_pb2.SearchRequest(image=image, top_k=50))
    assert "k-1" not in {h.product_id for h in default.hits}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.GetProduct(search_pb2.GetProductRequest(product_id="k-1"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    assert (await gateway.DeleteCatalog(search_pb2.DeleteCatalogRequest(catalog="shop_two"))).existed
    assert not (await gateway.DeleteCatalog(search_pb2.DeleteCatalogRequest(catalog="shop_two"))).existed
    after = await gateway.Search(search_pb2.SearchRequest(catalog="shop_two", image=image, top_k=5))
    assert list(after.hits) == []


@pytest.mark.parametrize("name", ["Shop", "a-b", "x" * 49, 'x"; drop'])
async def test_bad_catalog_names_are_invalid_arguments(gateway, name: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Search(search_pb2.SearchRequest(catalog=name, product_id="p"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "catalog" in (caught.value.details() or "")


async def test_the_default_catalog_cannot_be_dropped(gateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.DeleteCatalog(search_pb2.DeleteCatalogRequest(catalog=""))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
