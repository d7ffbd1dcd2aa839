"""The retriever's behaviour, free of gRPC: validation, grouping, more-like-this.

Milvus ranks images; callers want products. A product may have many images,
so a search over-fetches images, keeps each product's best-scoring image and
asks again with a larger limit when a full page still left the answer
uncertain (see `_ranked`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from imagesearch.common.errors import InvalidArgument, NotFound
from imagesearch.common.types import FilterSpec, Hit, ModelId, ProductRecord
from imagesearch.contracts.limits import MAX_TOP_K, check_catalog, check_min_score, check_top_k
from imagesearch_retriever.filters import build_expression
from imagesearch_retriever.milvus_store import MAX_SEARCH_LIMIT, Image, ImageMatch, validate_model

# Images fetched per wanted product on the first try: catalogs have a few images per product.
OVERFETCH = 4
GROWTH = 4


class VectorStore(Protocol):
    async def upsert(
        self, model: ModelId, products: Sequence[tuple[ProductRecord, Sequence[Image]]]
    ) -> tuple[int, int]: ...
    async def delete(self, model: ModelId, product_ids: Sequence[str]) -> tuple[list[str], list[str]]: ...
    async def get(self, model: ModelId, product_id: str) -> ProductRecord: ...
    async def product_vectors(self, model: ModelId, product_id: str) -> list[tuple[str, np.ndarray]]: ...
    async def search(
        self, model: ModelId, vectors: Sequence[np.ndarray], limit: int, expr: str
    ) -> list[list[ImageMatch]]: ...
    async def drop(self, model: ModelId) -> bool: ...
    def scoped(self, catalog: str) -> VectorStore: ...


class RetrieverCore:
    def __init__(self, store: VectorStore, max_top_k: int = MAX_TOP_K) -> None:
        self._store = store
        self._max_top_k = max_top_k

    def for_catalog(self, catalog: str) -> RetrieverCore:
        """The same behaviour over one named catalog's collections ("" = the default catalog)."""
        if not check_catalog(catalog):
            return self
        return RetrieverCore(self._store.scoped(catalog), self._max_top_k)

    async def drop_catalog(self, model: ModelId, catalog: str) -> bool:
        if not check_catalog(catalog):
            raise InvalidArgument("the default catalog cannot be dropped; delete its products instead")
        return await self._store.scoped(catalog).drop(model)

    async def search(
        self,
        model: ModelId,
        query: np.ndarray | str,
        top_k: int = 0,
        filter_spec: FilterSpec = FilterSpec(),
        min_score: float = 0.0,
    ) -> list[Hit]:
        """One hit per product, best first. `query` is a vector, or a product id for "more like this"."""
        validate_model(model)
        top_k = check_top_k(top_k, self._max_top_k)
        check_min_score(min_score)
        if isinstance(query, str):
            if not query:
                raise InvalidArgument("product_id of a more-like-this query must not be empty")
            expr = build_expression(filter_spec, exclude_product_id=query)
            images = await self._store.product_vectors(model, query)
            if not images:
                raise NotFound(f"product {query!r} not found (model {model.name} v{model.version})")
            vectors = [vector for _, vector in images]
        else:
            expr = build_expression(filter_spec)
            vectors = [np.asarray(query, dtype=np.float32)]
        return await self._ranked(model, vectors, top_k, expr, min_score)

    async def _ranked(
        self, model: ModelId, vectors: list[np.ndarray], top_k: int, expr: str, min_score: float
    ) -> list[Hit]:
        """Best image per product across all query vectors, re-fetching until the top_k is settled.

        After a fetch of `limit` images per vector, any (product, vector) pair
        not seen scores below the last score of that vector's page when the
        page was full. So the answer is final once the k-th best product
        scores at least that bound (always true for a single vector with k
        products), or the bound is already below min_score, or no page was full.
        """
        limit = min(top_k * OVERFETCH, MAX_SEARCH_LIMIT)
        while True:
            pages = await self._store.search(model, vectors, limit, expr)
            best: dict[str, ImageMatch] = {}
            for page in pages:
                for match in page:
                    held = best.get(match.product_id)
                    if held is None or match.score > held.score:
                        best[match.product_id] = match
            ranked = sorted(best.values(), key=lambda m: (-m.score, m.product_id))
            qualified = [m for m in ranked if m.score >= min_score]
            full_pages = [page for page in pages if len(page) >= limit]
            if not full_pages or limit >= MAX_SEARCH_LIMIT:
                break
            bound = max(page[-1].score for page in full_pages)
            if bound < min_score or (len(qualified) >= top_k and qualified[top_k - 1].score >= bound):
                break
            limit = min(limit * GROWTH, MAX_SEARCH_LIMIT)
        return [_hit(m) for m in qualified[:top_k]]

    async def upsert(
        self, model: ModelId, products: Sequence[tuple[ProductRecord, Sequence[Image]]]
    ) -> tuple[int, int]:
        validate_model(model)
        return await self._store.upsert(model, products)

    async def delete(self, model: ModelId, product_ids: Sequence[str]) -> tuple[list[str], list[str]]:
        validate_model(model)
        if not product_ids:
            raise InvalidArgument("product_ids must not be empty")
        return await self._store.delete(model, product_ids)

    async def get(self, model: ModelId, product_id: str) -> ProductRecord:
        validate_model(model)
        if not product_id:
            raise InvalidArgument("product_id must not be empty")
        return await self._store.get(model, product_id)


def _hit(match: ImageMatch) -> Hit:
    return Hit(
        product_id=match.product_id,
        score=match.score,
        title=match.title,
        category=match.category,
        brand=match.brand,
        price=match.price,
        image_uri=match.image_uri,
        attributes=dict(match.attributes),
    )
