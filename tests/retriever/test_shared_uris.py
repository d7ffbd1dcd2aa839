"""Several rows of one product may show one image (the gateway indexes each catalog image as sent and
trimmed to its object, under the same uri): the product still lists that uri once."""

from __future__ import annotations

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common.types import ModelId, ProductRecord
from imagesearch_retriever.milvus.store import MilvusOptions, MilvusStore

DIM = 8
MODEL = ModelId("shared-uri-test", "1", DIM)


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_uri_shared_by_rows_is_listed_once_in_order(milvus_uri: str, unique_prefix: str) -> None:
    rng = np.random.default_rng(5)
    store = MilvusStore(
        MilvusOptions(milvus_uri, collection_prefix=unique_prefix, timeout_seconds=30), TracerProvider()
    )
    await store.connect()
    try:
        rows = [("front.jpg", unit(rng)), ("back.jpg", unit(rng)), ("front.jpg", unit(rng)), ("back.jpg", unit(rng))]
        assert await store.upsert("", MODEL, [(ProductRecord("p1", title="t"), rows)]) == (1, 4)
        product = await store.get("", MODEL, "p1")
        assert product is not None and product.image_uris == ("front.jpg", "back.jpg")
        # Every row is still there to match (and to seed more-like-this).
        assert [uri for uri, _ in await store.product_vectors("", MODEL, "p1")] == [uri for uri, _ in rows]
    finally:
        await store.close()
