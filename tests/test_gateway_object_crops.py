"""Catalog writes index every image twice: as sent, and trimmed to its object (GATEWAY_INDEX_OBJECT_CROPS).

The gateway's CatalogCore driven with in-memory stand-ins for the embedder and the retriever;
tests/e2e/test_object_crops.py checks the same against the real services.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from imagesearch.common.config import SettingsError
from imagesearch.common.types import ModelId, ProductRecord, Region
from imagesearch_gateway.clients import ImageFault
from imagesearch_gateway.core import CatalogCore, ProductUpsert
from imagesearch_gateway.settings import ENV_VARS, GatewaySettings

MODEL = ModelId("fake", "1", 3)
AS_SENT, TRIMMED = np.array([1.0, 0.0, 0.0], np.float32), np.array([0.0, 1.0, 0.0], np.float32)
CORRUPT = 5  # IMAGE_ERROR_REASON_CORRUPT


class Embedder:
    """A vector per view (which view it was is readable from the vector); b"bad" is rejected."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []  # (images, trim_to_object)

    async def embed(
        self, images: Sequence[tuple[bytes, Region | None]], localize: bool = False, trim_to_object: bool = False
    ) -> list[np.ndarray | ImageFault]:
        self.calls.append((len(images), trim_to_object))
        view = TRIMMED if trim_to_object else AS_SENT
        return [ImageFault(CORRUPT, "bad bytes") if content == b"bad" else view.copy() for content, _ in images]


class Retriever:
    def __init__(self) -> None:
        self.writes: list[tuple[ProductRecord, list[tuple[str, np.ndarray]]]] = []
        self.searches = 0

    async def upsert(self, model: ModelId, products: Sequence[Any], catalog: str = "") -> None:
        self.writes.extend(products)

    async def search(self, model: ModelId, **kwargs: Any) -> list[Any]:
        self.searches += 1
        return []


class Cache:
    async def invalidate(self, catalog: str) -> None:
        pass


def core(object_crops: bool, max_images: int = 4) -> tuple[CatalogCore, Embedder, Retriever]:
    embedder, retriever = Embedder(), Retriever()
    models = SimpleNamespace(model=MODEL, calibration=GatewaySettings().calibration)
    catalog = CatalogCore(embedder, retriever, Cache(), models, max_images, object_crops)  # type: ignore[arg-type]
    return catalog, embedder, retriever


def product(pid: str, *images: tuple[bytes, str]) -> ProductUpsert:
    return ProductUpsert(ProductRecord(product_id=pid, title=pid), list(images))


def views(rows: list[tuple[str, np.ndarray]]) -> list[tuple[str, str]]:
    return [(uri, "sent" if np.array_equal(v, AS_SENT) else "trimmed") for uri, v in rows]


async def test_each_image_is_written_as_sent_then_trimmed_under_its_uri() -> None:
    catalog, embedder, retriever = core(object_crops=True)
    [outcome] = await catalog.upsert([product("p1", (b"a", "cdn/a.jpg"), (b"b", ""))])
    assert outcome.ok and outcome.images_indexed == 2  # the caller's images, not the rows
    [(record, rows)] = retriever.writes
    assert views(rows) == [("cdn/a.jpg", "sent"), ("p1#1", "sent"), ("cdn/a.jpg", "trimmed"), ("p1#1", "trimmed")]
    assert record.image_uris == ("cdn/a.jpg", "p1#1")
    assert sorted(embedder.calls) == [(2, False), (2, True)]


async def test_with_the_setting_off_each_image_is_one_row() -> None:
    catalog, embedder, retriever = core(object_crops=False)
    [outcome] = await catalog.upsert([product("p1", (b"a", ""), (b"b", ""))])
    assert outcome.images_indexed == 2
    assert views(retriever.writes[0][1]) == [("p1#0", "sent"), ("p1#1", "sent")]
    assert embedder.calls == [(2, False)]


async def test_a_bad_image_is_reported_once_and_its_product_not_written() -> None:
    catalog, _, retriever = core(object_crops=True)
    bad, good = await catalog.upsert([product("p1", (b"a", ""), (b"bad", "")), product("p2", (b"c", ""))])
    assert not bad.ok and bad.error == "1 of 2 images rejected; product not written"
    assert [(f.index, f.reason) for f in bad.image_failures] == [(1, CORRUPT)]
    assert good.ok and [record.product_id for record, _ in retriever.writes] == ["p2"]


async def test_the_image_limit_counts_the_callers_images() -> None:
    catalog, _, retriever = core(object_crops=True, max_images=3)
    fits, too_many = await catalog.upsert(
        [
            product("p1", *[(b"x", "")] * 3),
            product("p2", *[(b"x", "")] * 4),
        ]
    )
    assert fits.ok and fits.images_indexed == 3 and len(retriever.writes[0][1]) == 6
    assert not too_many.ok and too_many.error == "product has 4 images; the limit is 3"


async def test_the_duplicate_check_looks_with_both_views() -> None:
    catalog, _, retriever = core(object_crops=True)
    await catalog.upsert([product("p1", (b"a", ""), (b"b", ""))], duplicate_threshold=0.9)
    assert retriever.searches == 4


def test_the_setting_defaults_on_and_reads_the_environment() -> None:
    assert GatewaySettings.from_env({}).index_object_crops is True
    assert GatewaySettings.from_env({"GATEWAY_INDEX_OBJECT_CROPS": "false"}).index_object_crops is False
    assert GatewaySettings.from_env({"GATEWAY_INDEX_OBJECT_CROPS": "1"}).index_object_crops is True
    with pytest.raises(SettingsError, match="GATEWAY_INDEX_OBJECT_CROPS"):
        GatewaySettings.from_env({"GATEWAY_INDEX_OBJECT_CROPS": "sometimes"})
    assert ("GATEWAY_INDEX_OBJECT_CROPS", "true") in [(name, default) for name, default, _ in ENV_VARS]


def test_doubled_rows_must_fit_the_retrievers_limit() -> None:
    assert GatewaySettings.from_env({"GATEWAY_MAX_IMAGES_PER_PRODUCT": "64"}).max_images_per_product == 64
    with pytest.raises(SettingsError, match="130 rows per product"):
        GatewaySettings.from_env({"GATEWAY_MAX_IMAGES_PER_PRODUCT": "65"})
    off = {"GATEWAY_MAX_IMAGES_PER_PRODUCT": "128", "GATEWAY_INDEX_OBJECT_CROPS": "off"}
    assert GatewaySettings.from_env(off).max_images_per_product == 128
