"""Every object in the photo: Search lists the objects it finds (box, likely category), searches the
main one by default and any other by its index, and always says which box it searched."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from support import product_input, read_rows, side_by_side

from imagesearch.v1 import common_pb2, search_pb2

pytestmark = pytest.mark.asyncio(loop_scope="session")

CATALOG = "objects"  # a catalog of its own: no other module's copy of these images competes
PAIR = (52, 162)  # two dev catalog products, photographed side by side


@pytest.fixture(scope="module")
def pair(dev_set: Path) -> list[dict[str, str]]:
    rows = read_rows(dev_set / "catalog.csv")
    return [rows[i] for i in PAIR]


@pytest.fixture(scope="module", autouse=True)
async def indexed(gateway, dev_set: Path, pair):  # type: ignore[no-untyped-def]
    rows = read_rows(dev_set / "catalog.csv")[200:212]  # neighbours to tell them from
    products = [
        product_input(row["product_id"], [(dev_set / row["image"]).read_bytes()], category=row["category"])
        for row in [*pair, *rows]
    ]
    reply = await gateway.UpsertProducts(search_pb2.UpsertProductsRequest(catalog=CATALOG, products=products))
    assert all(r.ok for r in reply.results), reply
    yield
    await gateway.DeleteCatalog(search_pb2.DeleteCatalogRequest(catalog=CATALOG))


def _box(b: common_pb2.BoundingBox) -> tuple[float, ...]:
    return (b.x_min, b.y_min, b.x_max, b.y_max)


async def test_two_products_side_by_side_are_both_found_and_each_is_searchable(gateway, dev_set: Path, pair) -> None:  # type: ignore[no-untyped-def]
    photo = side_by_side(dev_set / pair[0]["image"], dev_set / pair[1]["image"])
    first = await gateway.Search(search_pb2.SearchRequest(catalog=CATALOG, image=photo, top_k=3, skip_cache=True))
    assert len(first.objects) == 2, first.objects
    assert [o.index for o in first.objects] == [0, 1]
    by_side = sorted(first.objects, key=lambda o: o.box.x_min)
    assert by_side[0].box.x_max <= 0.55 and by_side[1].box.x_min >= 0.45  # one box per product
    assert _box(first.searched_box) == _box(first.objects[0].box)  # the main object, by default
    for found in first.objects:
        assert found.HasField("category") and 0 < found.category.confidence <= 1

    # Searching each object finds the product in that half of the photo, and names its box.
    expected = {0: pair[0]["product_id"], 1: pair[1]["product_id"]}  # left, right
    for found in first.objects:
        reply = await gateway.Search(
            search_pb2.SearchRequest(catalog=CATALOG, image=photo, top_k=3, object_index=found.index)
        )
        side = 0 if found.box.x_max <= 0.55 else 1
        assert reply.hits[0].product_id == expected[side], (found.index, side, reply.hits[:2])
        assert _box(reply.searched_box) == _box(found.box)
        assert reply.objects[found.index].category.category == reply.predicted_category.category


async def test_the_cache_keys_on_the_object_searched(gateway, dev_set: Path, pair) -> None:  # type: ignore[no-untyped-def]
    photo = side_by_side(dev_set / pair[1]["image"], dev_set / pair[0]["image"])  # a photo of its own
    answers = {}
    for index in (0, 1, 0, 1):
        reply = await gateway.Search(search_pb2.SearchRequest(catalog=CATALOG, image=photo, object_index=index))
        if index in answers:
            assert reply.cache_hit
            assert [h.product_id for h in reply.hits] == answers[index].hits
            assert _box(reply.searched_box) == answers[index].box
            assert [_box(o.box) for o in reply.objects] == answers[index].objects
        else:
            assert not reply.cache_hit
            answers[index] = type(
                "Seen",
                (),
                {
                    "hits": [h.product_id for h in reply.hits],
                    "box": _box(reply.searched_box),
                    "objects": [_box(o.box) for o in reply.objects],
                },
            )
    assert answers[0].hits[0] != answers[1].hits[0]


async def test_an_object_the_photo_does_not_have_or_beside_a_region_is_refused(gateway, dev_set: Path, pair) -> None:  # type: ignore[no-untyped-def]
    photo = side_by_side(dev_set / pair[0]["image"], dev_set / pair[1]["image"])
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await gateway.Search(search_pb2.SearchRequest(catalog=CATALOG, image=photo, object_index=7))
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "object_index 7 names no object of this photo: it has 2" in (missing.value.details() or "")
    region = common_pb2.BoundingBox(x_min=0, y_min=0, x_max=0.5, y_max=1)
    with pytest.raises(grpc.aio.AioRpcError) as both:
        await gateway.Search(search_pb2.SearchRequest(catalog=CATALOG, image=photo, region=region, object_index=1))
    assert both.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A region search lists no objects and searched exactly the caller's box.
    reply = await gateway.Search(search_pb2.SearchRequest(catalog=CATALOG, image=photo, region=region))
    assert not reply.objects and reply.searched_box == region
    assert reply.hits[0].product_id == pair[0]["product_id"]
