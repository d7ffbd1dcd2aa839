"""What the retriever's core needs from a vector store, in plain types (the Milvus adapter implements it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from imagesearch.common.types import FilterSpec, Floats, Hit, ModelId, ProductRecord

# (uri, unit vector) of one indexed image.
Image = tuple[str, Floats]


@dataclass(frozen=True)
class VectorQuery:
    """The `limit` nearest images of each vector, best first, that pass `spec` (and are not `exclude_product_id`'s).

    Each page holds image rows as hits (`Hit.image_uri` says which image); the core makes products of them.
    """

    vectors: Sequence[Floats]
    limit: int
    spec: FilterSpec = FilterSpec()
    exclude_product_id: str | None = None


class VectorStore(Protocol):
    """Per (catalog, model): the products' image rows, written atomically per product. Inputs arrive
    validated (validation.py). `deadline` (time.monotonic()) is the caller's: past it a write is
    not committed, and fails DEADLINE_EXCEEDED having changed nothing visible."""

    # The most images one search may return per query vector (Milvus' topk limit).
    max_search_limit: int

    async def upsert(
        self,
        catalog: str,
        model: ModelId,
        products: Sequence[tuple[ProductRecord, Sequence[Image]]],
        deadline: float | None = None,
    ) -> tuple[int, int]:
        """Write products (each replacing its earlier version, whole or not at all); (products, rows) written."""
        ...

    async def delete(
        self, catalog: str, model: ModelId, product_ids: Sequence[str], deadline: float | None = None
    ) -> tuple[list[str], list[str]]:
        """Remove products from the catalog, under every model; (deleted, not found), each in request order."""
        ...

    async def get(self, catalog: str, model: ModelId, product_id: str) -> ProductRecord | None: ...

    async def product_vectors(self, catalog: str, model: ModelId, product_id: str) -> list[Image]:
        """Each indexed image of a product, in upsert order; [] when it is unknown."""
        ...

    async def search(self, catalog: str, model: ModelId, query: VectorQuery) -> list[list[Hit]]:
        """One page of image hits per query vector."""
        ...

    async def drop(self, catalog: str, model: ModelId) -> bool:
        """Drop the catalog, under every model; False when it did not exist."""
        ...
