"""Search by photo through gateway -> embedder (Triton) -> retriever (Milvus)."""

from __future__ import annotations

import pytest
from support import product_input, read_rows, side_by_side

from imagesearch.v1 import common_pb2, search_pb2

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Products of this module carry ids "s-<dev id>" so they never collide with other modules' products.
CATEGORIES = ("cat-a", "cat-b", "cat-c")


@pytest.fixture(scope="module")
def catalog(dev_set):  # type: ignore[no-untyped-def]
    rows = read_rows(dev_set / "catalog.csv")[:24]
    return [
        {
            "id": f"s-{row['product_id']}",
            "path": dev_set / row["image"],
            "category": CATEGORIES[i % 3],
            "brand": "north" if i % 2 else "south",
            "price": float(5 + 5 * i),
            "color": "red" if i % 4 == 0 else "blue",
        }
        for i, row in enumerate(rows)
    ]


@pytest.fixture(scope="module", autouse=True)
async def indexed(gateway, catalog):  # type: ignore[no-untyped-def]
    reply = await gateway.UpsertProducts(
        search_pb2.UpsertProductsRequest(
            products=[
                product_input(
                    p["id"],
                    [p["path"].read_bytes()],
                    category=p["category"],
                    brand=p["brand"],
                    price=p["price"],
                    attributes={"color": p["color"]},
                )
                for p in catalog
            ]
        )
    )
    assert all(r.ok for r in reply.results), reply
    yield
    await gateway.DeleteProducts(search_pb2.DeleteProductsRequest(product_ids=[p["id"] for p in catalog]))


async def search(gateway, **kwargs):  # type: ignore[no-untyped-def]
    kwargs.setdefault("skip_cache", True)
    return await gateway.Search(search_pb2.SearchRequest(**kwargs))


async def test_a_catalog_image_finds_its_own_product_first(gateway, catalog) -> None:
    target = catalog[5]
    reply = await search(gateway, image=target["path"].read_bytes())
    assert reply.hits[0].product_id == target["id"]
    # Queries are cropped to the product the model finds, so even the catalog shot itself is
    # framed a little differently from its indexed copy...
    assert reply.hits[0].score > 0.5
    # ...unless the caller's region says where to look: the whole image, exactly as indexed.
    whole = common_pb2.BoundingBox(x_min=0, y_min=0, x_max=1, y_max=1)
    exact = await search(gateway, image=target["path"].read_bytes(), region=whole)
    assert exact.hits[0].product_id == target["id"]
    assert exact.hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert reply.hits[0].category == target["category"]
    assert reply.hits[0].price == target["price"]
    assert reply.hits[0].attributes["color"] == target["color"]
    assert reply.model.name and reply.model.version and reply.model.dimension == 1280
    assert len(reply.hits) == 10 and not reply.cache_hit
    # Best match first; then the predicted category's products, then the rest, each by score.
    assert reply.hits[0].score == max(hit.score for hit in reply.hits)
    predicted = reply.predicted_category.category
    for group in (
        [h for h in reply.hits[1:] if h.category == predicted],
        [h for h in reply.hits[1:] if h.category != predicted],
    ):
        assert [h.score for h in group] == sorted((h.score for h in group), reverse=True)


async def test_top_k_defaults_to_ten_and_is_honoured(gateway, catalog) -> None:
    image = catalog[0]["path"].read_bytes()
    assert len((await search(gateway, image=image)).hits) == 10
    assert len((await search(gateway, image=image, top_k=3)).hits) == 3


async def test_filters_restrict_results(gateway, catalog) -> None:
    image = catalog[1]["path"].read_bytes()
    by_category = await search(gateway, image=image, filter=common_pb2.Filter(categories=["cat-b"]), top_k=50)
    assert by_category.hits and {h.category for h in by_category.hits} == {"cat-b"}

    price = common_pb2.Filter(price=common_pb2.PriceRange(min=20, max=40))
    by_price = await search(gateway, image=image, filter=price, top_k=50)
    assert by_price.hits and all(20 <= h.price <= 40 for h in by_price.hits)

    by_brand = await search(gateway, image=image, filter=common_pb2.Filter(brands=["north"]), top_k=50)
    assert by_brand.hits and {h.brand for h in by_brand.hits} == {"north"}

    red = common_pb2.Filter(attributes=[common_pb2.AttributeFilter(key="color", values=["red"])])
    by_attribute = await search(gateway, image=image, filter=red, top_k=50)
    assert by_attribute.hits and {h.attributes["color"] for h in by_attribute.hits} == {"red"}

    combined = common_pb2.Filter(categories=["cat-a"], brands=["south"])
    both = await search(gateway, image=image, filter=combined, top_k=50)
    assert all(h.category == "cat-a" and h.brand == "south" for h in both.hits)


async def test_min_score_drops_weak_hits(gateway, catalog) -> None:
    image = catalog[2]["path"].read_bytes()
    everything = await search(gateway, image=image, top_k=20)
    cut = sorted((h.score for h in everything.hits), reverse=True)[3] + 1e-4
    strong = await search(gateway, image=image, top_k=20, min_score=cut)
    # Exactly the hits scoring above the cut, in the same order as without it.
    assert [h.product_id for h in strong.hits] == [h.product_id for h in everything.hits if h.score >= cut]
    assert len(strong.hits) == 3


async def test_region_of_interest_searches_inside_the_box(gateway, catalog) -> None:
    left, right = catalog[3], catalog[4]
    photo = side_by_side(left["path"], right["path"])
    left_half = await search(gateway, image=photo, region=common_pb2.BoundingBox(x_min=0, y_min=0, x_max=0.5, y_max=1))
    right_half = await search(gateway, image=photo, region=common_pb2.BoundingBox(x_min=0.5, y_min=0, x_max=1, y_max=1))
    assert left_half.hits[0].product_id == left["id"]
    assert right_half.hits[0].product_id == right["id"]


async def test_more_like_this_excludes_the_product_itself(gateway, catalog) -> None:
    reply = await search(gateway, product_id=catalog[6]["id"], top_k=5)
    assert len(reply.hits) == 5
    assert catalog[6]["id"] not in {h.product_id for h in reply.hits}


async def test_results_are_one_hit_per_product_with_the_best_image(gateway, catalog, dev_set) -> None:
    extra = read_rows(dev_set / "catalog.csv")[30]
    own, other = catalog[7]["path"].read_bytes(), (dev_set / extra["image"]).read_bytes()
    reply = await gateway.UpsertProducts(
        search_pb2.UpsertProductsRequest(products=[product_input("s-multi", [other, own, own])])
    )
    assert reply.results[0].ok and reply.results[0].images_indexed == 3
    try:
        hits = (await search(gateway, image=own, top_k=50)).hits
        ids = [h.product_id for h in hits]
        assert len(ids) == len(set(ids))
        # One of the two copies of the query image beats the other product image.
        assert hits[ids.index("s-multi")].image_uri in {"s-multi#1", "s-multi#2"}
        product = await gateway.GetProduct(search_pb2.GetProductRequest(product_id="s-multi"))
        assert list(product.image_uris) == ["s-multi#0", "s-multi#1", "s-multi#2"]
    finally:
        await gateway.DeleteProducts(search_pb2.DeleteProductsRequest(product_ids=["s-multi"]))


async def test_upsert_replaces_a_products_older_images(gateway, catalog, dev_set) -> None:
    first, second = catalog[8]["path"].read_bytes(), catalog[9]["path"].read_bytes()
    await gateway.UpsertProducts(search_pb2.UpsertProductsRequest(products=[product_input("s-swap", [first, first])]))
    await gateway.UpsertProducts(search_pb2.UpsertProductsRequest(products=[product_input("s-swap", [second])]))
    try:
        product = await gateway.GetProduct(search_pb2.GetProductRequest(product_id="s-swap"))
        assert list(product.image_uris) == ["s-swap#0"]
        hits = (await search(gateway, image=first, top_k=3)).hits
        assert hits[0].product_id == catalog[8]["id"]
        swap = [h for h in (await search(gateway, image=first, top_k=50)).hits if h.product_id == "s-swap"]
        assert not swap or swap[0].score < 0.99  # only the new image is left to match
    finally:
        await gateway.DeleteProducts(search_pb2.DeleteProductsRequest(product_ids=["s-swap"]))


async def test_the_query_category_is_predicted_and_can_restrict_results(gateway, catalog) -> None:
    target = catalog[10]
    reply = await search(gateway, image=target["path"].read_bytes(), top_k=5)
    prediction = reply.predicted_category
    assert prediction.category in CATEGORIES and 0 < prediction.confidence <= 1
    restricted = await search(gateway, image=target["path"].read_bytes(), top_k=20, restrict_to_predicted_category=True)
    assert restricted.hits and {h.category for h in restricted.hits} == {prediction.category}
    assert restricted.predicted_category == prediction
    # Combined with the caller's filter by AND: a disjoint category set leaves nothing.
    other = next(c for c in CATEGORIES if c != prediction.category)
    none = await search(
        gateway,
        image=target["path"].read_bytes(),
        restrict_to_predicted_category=True,
        filter=common_pb2.Filter(categories=[other]),
    )
    assert list(none.hits) == []


async def test_hits_carry_a_calibrated_same_product_probability(gateway, catalog) -> None:
    whole = common_pb2.BoundingBox(x_min=0, y_min=0, x_max=1, y_max=1)
    reply = await search(gateway, image=catalog[11]["path"].read_bytes(), region=whole, top_k=10)
    probabilities = [h.same_product_probability for h in reply.hits]
    assert probabilities[0] > 0.99  # the identical image
    assert all(0 <= p <= 1 for p in probabilities)
    ordered = sorted(reply.hits, key=lambda h: -h.score)
    assert [h.same_product_probability for h in ordered] == sorted(probabilities, reverse=True)  # monotone in the score


async def test_ingest_reports_probable_duplicates_above_the_callers_threshold(gateway, catalog, dev_set) -> None:
    copy = catalog[12]["path"].read_bytes()
    fresh = (dev_set / read_rows(dev_set / "catalog.csv")[90]["image"]).read_bytes()
    reply = await gateway.UpsertProducts(
        search_pb2.UpsertProductsRequest(
            duplicate_threshold=0.5, products=[product_input("s-dup", [copy]), product_input("s-new", [fresh])]
        )
    )
    try:
        dup, new = reply.results
        assert dup.ok and [d.product_id for d in dup.possible_duplicates][:1] == [catalog[12]["id"]]
        assert dup.possible_duplicates[0].same_product_probability > 0.99
        assert new.ok and list(new.possible_duplicates) == []
        again = await gateway.UpsertProducts(
            search_pb2.UpsertProductsRequest(duplicate_threshold=0.5, products=[product_input("s-dup", [copy])])
        )
        assert "s-dup" not in {d.product_id for d in again.results[0].possible_duplicates}  # never itself
    finally:
        await gateway.DeleteProducts(search_pb2.DeleteProductsRequest(product_ids=["s-dup", "s-new"]))
