"""Catalog images are indexed twice: as sent, and trimmed to the object (GATEWAY_INDEX_OBJECT_CROPS, on by default).

Shoppers' queries are cropped tight around the product, catalog shots show it with a margin of
plain background: the trimmed twin is the row such a query matches (docs/quality.md, "Index side").
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from pymilvus import MilvusClient
from support import product_input, read_rows

from imagesearch.imaging.objects import object_box
from imagesearch.v1 import common_pb2, search_pb2
from imagesearch_retriever.milvus import schema
from imagesearch_retriever.milvus.schema import collection_name

pytestmark = pytest.mark.asyncio(loop_scope="session")

CATALOG = "object_crops"  # a catalog of its own: no other module's copy of these images competes
TARGET = "oc-target"
FRONT, BACK = "https://cdn.example/oc/front.jpg", "https://cdn.example/oc/back.jpg"
WHOLE = common_pb2.BoundingBox(x_min=0, y_min=0, x_max=1, y_max=1)  # a region: the query is embedded as sent


@pytest.fixture(scope="module")
def shots(dev_set: Path) -> list[Path]:
    """Catalog shots whose object covers well under half of the frame, so trimming changes the view."""
    paths = [dev_set / row["image"] for row in read_rows(dev_set / "catalog.csv")[40:140]]
    chosen = []
    for path in paths:
        with Image.open(path) as im:
            box = object_box(im)
            if box is not None and (box[2] - box[0]) * (box[3] - box[1]) < 0.4 * im.width * im.height:
                chosen.append(path)
    assert len(chosen) >= 7
    return chosen[:7]


@pytest.fixture(scope="module", autouse=True)
async def indexed(gateway, shots):  # type: ignore[no-untyped-def]
    target = search_pb2.ProductInput(
        product=common_pb2.Product(product_id=TARGET, title="target", category="misc", price=1.0),
        images=[
            search_pb2.ProductImage(content=shots[0].read_bytes(), uri=FRONT),
            search_pb2.ProductImage(content=shots[1].read_bytes(), uri=BACK),
        ],
    )
    others = [product_input(f"oc-{path.stem}", [path.read_bytes()]) for path in shots[2:]]
    reply = await gateway.UpsertProducts(search_pb2.UpsertProductsRequest(catalog=CATALOG, products=[target, *others]))
    assert all(r.ok for r in reply.results), reply
    assert [r.images_indexed for r in reply.results] == [2, 1, 1, 1, 1, 1]  # the caller's images, not the rows
    yield
    await gateway.DeleteCatalog(search_pb2.DeleteCatalogRequest(catalog=CATALOG))


def tight_crop(path: Path) -> bytes:
    """The product as a shopper's tight query crop shows it: the object alone, framed square on white."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    box = object_box(rgb)
    assert box is not None
    crop = rgb.crop(box)
    side = max(crop.size)
    square = Image.new("RGB", (side, side), "white")
    square.paste(crop, ((side - crop.width) // 2, (side - crop.height) // 2))
    out = io.BytesIO()
    square.save(out, "PNG")
    return out.getvalue()


async def test_every_image_is_two_rows_under_one_uri(fleet) -> None:  # type: ignore[no-untyped-def]
    name = collection_name(f"e2e_c_{CATALOG}", fleet.gateway_backend.models.current.id)
    client = MilvusClient(uri=fleet.milvus_uri)
    try:
        rows = client.query(
            name,
            filter=f'product_id == "{TARGET}"',
            output_fields=["image_id", "image_uri", "version"],
            consistency_level="Strong",
        )
    finally:
        client.close()
    [version] = {row["version"] for row in rows}  # one write's rows
    by_index = {schema.image_index(row["image_id"]): row["image_uri"] for row in rows}
    # As sent first (the ids the rows had before object crops), then the trimmed twins.
    assert by_index == {0: FRONT, 1: BACK, 2: FRONT, 3: BACK}
    assert {row["image_id"] for row in rows} == {f"{TARGET}#{version}#{index}" for index in range(4)}


async def test_get_product_lists_each_uri_once(gateway) -> None:  # type: ignore[no-untyped-def]
    product = await gateway.GetProduct(search_pb2.GetProductRequest(catalog=CATALOG, product_id=TARGET))
    assert list(product.image_uris) == [FRONT, BACK]


async def test_a_tight_crop_of_the_product_matches_its_trimmed_row(gateway, shots) -> None:  # type: ignore[no-untyped-def]
    reply = await gateway.Search(
        search_pb2.SearchRequest(
            catalog=CATALOG,
            image=tight_crop(shots[0]),
            region=WHOLE,
            top_k=5,
            skip_cache=True,
        )
    )
    best = reply.hits[0]
    assert (best.product_id, best.image_uri) == (TARGET, FRONT)
    # The trimmed row is this framing of the shot, to within a pixel of letterboxing (0.98-1.0);
    # the row as sent alone scores ~0.93-0.95 here.
    assert best.score > 0.97, best.score
    assert [h.product_id for h in reply.hits].count(TARGET) == 1  # still one hit per product


async def test_each_trimmed_row_belongs_to_its_own_product(gateway, shots) -> None:  # type: ignore[no-untyped-def]
    for path in shots[2:]:
        reply = await gateway.Search(
            search_pb2.SearchRequest(
                catalog=CATALOG,
                image=tight_crop(path),
                region=WHOLE,
                top_k=3,
                skip_cache=True,
            )
        )
        assert reply.hits[0].product_id == f"oc-{path.stem}" and reply.hits[0].score > 0.97


async def test_a_bad_image_is_reported_once(gateway, shots) -> None:  # type: ignore[no-untyped-def]
    reply = await gateway.UpsertProducts(
        search_pb2.UpsertProductsRequest(
            catalog=CATALOG,
            products=[product_input("oc-bad", [shots[0].read_bytes(), b"GIF89a not really"])],
        )
    )
    [result] = reply.results
    assert not result.ok and result.images_indexed == 0
    assert [(f.index, f.error.reason) for f in result.image_failures] == [
        (1, common_pb2.IMAGE_ERROR_REASON_UNSUPPORTED_FORMAT)
    ]
