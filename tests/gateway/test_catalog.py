"""CatalogCore with in-memory ports: whole products, both views of every image, one model per write.

tests/e2e/test_object_crops.py checks the object crops against the real services.
"""

from __future__ import annotations

import numpy as np
import pytest

from gateway.fakes import MODEL, FakeCache, FakeEmbedder, FakeRetriever, corrupt, ports
from imagesearch.common.errors import InvalidArgument, Unavailable
from imagesearch.common.types import ImageErrorReason, ModelId, ProductRecord
from imagesearch_gateway.catalog import CatalogCore, CatalogOptions, ProductUpsert

AS_SENT, TRIMMED = np.array([1.0, 0.0, 0.0, 0.0], np.float32), np.array([0.0, 1.0, 0.0, 0.0], np.float32)


def views_of(content: bytes, trimmed: bool) -> np.ndarray | object:
    """Which view it was is readable from the vector; b"bad" is refused."""
    return corrupt() if content == b"bad" else (TRIMMED if trimmed else AS_SENT).copy()


def core(
    object_crops: bool = True, max_images: int = 4, embedder: FakeEmbedder | None = None
) -> tuple[CatalogCore, FakeEmbedder, FakeRetriever, FakeCache]:
    embedder = embedder or FakeEmbedder(views_of)  # type: ignore[arg-type]
    retriever, cache = FakeRetriever(), FakeCache()
    options = CatalogOptions(max_images_per_product=max_images, index_object_crops=object_crops)
    return CatalogCore(ports(embedder, retriever, cache), options), embedder, retriever, cache


def product(pid: str, *images: tuple[bytes, str]) -> ProductUpsert:
    return ProductUpsert(ProductRecord(product_id=pid, title=pid), list(images))


def views(rows: list[tuple[str, np.ndarray]]) -> list[tuple[str, str]]:
    return [(uri, "sent" if np.array_equal(v, AS_SENT) else "trimmed") for uri, v in rows]


async def test_each_image_is_written_as_sent_then_trimmed_under_its_uri() -> None:
    catalog, embedder, retriever, cache = core(object_crops=True)
    [outcome] = await catalog.upsert([product("p1", (b"a", "cdn/a.jpg"), (b"b", ""))], catalog="shop")
    assert outcome.ok and outcome.images_indexed == 2  # the caller's images, not the rows
    [(model, record, rows)] = retriever.writes
    assert model == MODEL
    assert views(rows) == [("cdn/a.jpg", "sent"), ("p1#1", "sent"), ("cdn/a.jpg", "trimmed"), ("p1#1", "trimmed")]
    assert record.image_uris == ("cdn/a.jpg", "p1#1")
    assert sorted(embedder.calls) == [(2, False), (2, True)]
    assert cache.invalidated == ["shop"]  # every write advances the catalog's cache generation


async def test_with_the_setting_off_each_image_is_one_row() -> None:
    catalog, embedder, retriever, _ = core(object_crops=False)
    [outcome] = await catalog.upsert([product("p1", (b"a", ""), (b"b", ""))])
    assert outcome.images_indexed == 2
    assert views(retriever.writes[0][2]) == [("p1#0", "sent"), ("p1#1", "sent")]
    assert embedder.calls == [(2, False)]


async def test_a_bad_image_is_reported_once_and_its_product_not_written() -> None:
    catalog, _, retriever, _ = core(object_crops=True)
    bad, good = await catalog.upsert([product("p1", (b"a", ""), (b"bad", "")), product("p2", (b"c", ""))])
    assert not bad.ok and bad.error == "1 of 2 images rejected; product not written"
    assert [(f.index, f.reason) for f in bad.image_failures] == [(1, ImageErrorReason.CORRUPT)]
    assert good.ok and [record.product_id for _, record, _ in retriever.writes] == ["p2"]


async def test_the_image_limit_counts_the_callers_images() -> None:
    catalog, _, retriever, _ = core(object_crops=True, max_images=3)
    fits, too_many = await catalog.upsert([product("p1", *[(b"x", "")] * 3), product("p2", *[(b"x", "")] * 4)])
    assert fits.ok and fits.images_indexed == 3 and len(retriever.writes[0][2]) == 6
    assert not too_many.ok and too_many.error == "product has 4 images; the limit is 3"


async def test_the_duplicate_check_looks_with_both_views() -> None:
    catalog, _, retriever, _ = core(object_crops=True)
    await catalog.upsert([product("p1", (b"a", ""), (b"b", ""))], duplicate_threshold=0.9)
    assert len(retriever.searches) == 4


async def test_vectors_are_written_under_the_model_that_made_them() -> None:
    rolled = ModelId(MODEL.name, "4", MODEL.dimension)
    catalog, _, retriever, _ = core(embedder=FakeEmbedder(views_of, model=rolled))  # type: ignore[arg-type]
    await catalog.upsert([product("p1", (b"a", ""))])
    assert [model for model, _, _ in retriever.writes] == [rolled]


async def test_a_rollout_between_the_calls_of_one_write_writes_nothing() -> None:
    embedder = FakeEmbedder(views_of)  # type: ignore[arg-type]
    rolled = ModelId(MODEL.name, "4", MODEL.dimension)

    def roll() -> None:
        embedder.model = rolled

    embedder.after_call = roll  # the second Embed call (the trimmed views) comes from version 4
    catalog, _, retriever, _ = core(embedder=embedder)
    with pytest.raises(Unavailable, match=r"model changed during the request \(versions \['3', '4'\]\); retry"):
        await catalog.upsert([product("p1", (b"a", ""))])
    assert retriever.writes == []


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        ([], "products must not be empty"),
        ([product("", (b"a", ""))], "products[0]: product_id must not be empty"),
        ([product("p", (b"a", "")), product("p", (b"b", ""))], "appears more than once"),
        ([ProductUpsert(ProductRecord("p", price=-1.0), [(b"a", "")])], "price must be a finite number >= 0"),
    ],
)
async def test_bad_requests_are_refused_before_any_work(items: list[ProductUpsert], fragment: str) -> None:
    catalog, embedder, _, _ = core()
    with pytest.raises(InvalidArgument) as info:
        await catalog.upsert(items)
    assert fragment in str(info.value) and embedder.calls == []


async def test_reads_and_deletes_use_the_current_model_and_deletes_invalidate() -> None:
    catalog, _, _, cache = core()
    assert (await catalog.get("p1")).product_id == "p1"
    assert await catalog.delete(["p1", "p1", "p2"], catalog="shop") == (["p1", "p2"], [])
    assert await catalog.delete_catalog("shop")
    assert cache.invalidated == ["shop", "shop"]
    with pytest.raises(InvalidArgument, match="the default catalog cannot be deleted"):
        await catalog.delete_catalog("")
