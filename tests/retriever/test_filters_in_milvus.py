"""Hostile filter values against the real Milvus: each matches exactly its own product."""

from __future__ import annotations

import uuid

import numpy as np
from opentelemetry.sdk.trace import TracerProvider
from support import HOSTILE_STRINGS as HOSTILE

from imagesearch.common.types import FilterSpec, ModelId, ProductRecord
from imagesearch_retriever.milvus.store import MilvusOptions, MilvusStore
from imagesearch_retriever.store import VectorQuery

DIM = 8
MODEL = ModelId("filter-test", "1", DIM)


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


async def test_hostile_strings_match_only_their_literal_product(milvus_uri: str) -> None:
    """Each hostile value, used as category, brand and attribute filter, matches exactly its own product."""
    rng = np.random.default_rng(7)
    options = MilvusOptions(milvus_uri, collection_prefix=f"f{uuid.uuid4().hex[:10]}", timeout_seconds=30)
    store = MilvusStore(options, TracerProvider())
    await store.connect()
    try:
        owner = {value: f"p{i}" for i, value in enumerate(HOSTILE)}
        products = [
            (
                ProductRecord(pid, title=value, category=value, brand=value, price=1.0, attributes={"k": value}),
                [(f"uri-{pid}", _unit(rng))],
            )
            for value, pid in owner.items()
        ]
        # Decoys that a broken escape or a LIKE-style match would let through.
        products.append(
            (ProductRecord("decoy1", category="a", brand="b", attributes={"k": "ab"}), [("d1", _unit(rng))])
        )
        products.append(
            (ProductRecord("decoy2", category="a\\\\b", brand='a""b', attributes={"k": "x"}), [("d2", _unit(rng))])
        )
        assert await store.upsert("", MODEL, products) == (len(products), len(products))

        query = [_unit(rng)]
        for value, pid in owner.items():
            for spec in (
                FilterSpec(categories=(value,)),
                FilterSpec(brands=(value,)),
                FilterSpec(attributes=(("k", (value,)),)),
            ):
                pages = await store.search("", MODEL, VectorQuery(query, limit=100, spec=spec))
                assert [m.product_id for m in pages[0]] == [pid], (value, spec)
                assert pages[0][0].category == value
            product = await store.get("", MODEL, pid)
            assert product is not None and product.category == value
    finally:
        await store.close()
