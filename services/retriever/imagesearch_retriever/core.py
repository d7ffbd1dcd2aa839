"""The retriever's behaviour, free of gRPC and of Milvus: validation, grouping, more-like-this.

Everything a request carries is checked here, once (validation.py); the store trusts its inputs.

Milvus ranks images; callers want products. A product may have many images, so a search
over-fetches images, keeps each product's best-scoring image and asks again with a larger limit
when a full page still left the answer uncertain (see `_ranked`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imagesearch.common.errors import InvalidArgument, NotFound
from imagesearch.common.types import FilterSpec, Floats, Hit, ModelId, ProductRecord
from imagesearch.contracts.limits import (
    MAX_IDS_PER_DELETE,
    MAX_PRODUCTS_PER_UPSERT,
    MAX_TOP_K,
    MAX_VECTORS_PER_SEARCH,
    check_catalog,
    check_count,
    check_min_score,
    check_product_id,
    check_top_k,
)
from imagesearch_retriever.store import Image, VectorQuery, VectorStore
from imagesearch_retriever.validation import normalised, validate_filter, validate_model, validate_product

# Images fetched per wanted product on the first try: catalogs have a few images per product.
OVERFETCH = 4
GROWTH = 4


class RetrieverCore:
    def __init__(self, store: VectorStore, max_top_k: int = MAX_TOP_K) -> None:
        self._store = store
        self._max_top_k = max_top_k

    async def search(
        self,
        catalog: str,
        model: ModelId,
        query: Floats | str | Sequence[Floats],
        top_k: int = 0,
        filter_spec: FilterSpec = FilterSpec(),
        min_score: float = 0.0,
    ) -> list[Hit]:
        """One hit per product, best first. `query` is a vector, several (each product at its best over
        them), or a product id for "more like this"."""
        check_catalog(catalog)
        validate_model(model)
        top_k = check_top_k(top_k, self._max_top_k)
        check_min_score(min_score)
        validate_filter(filter_spec)
        exclude = None
        if isinstance(query, str):
            if not query:
                raise InvalidArgument("product_id of a more-like-this query must not be empty")
            exclude = check_product_id(query)
            images = await self._store.product_vectors(catalog, model, query)
            if not images:
                raise NotFound(f"product {query!r} not found (model {model.name} v{model.version})")
            vectors = [vector for _, vector in images]
        elif isinstance(query, np.ndarray):
            vectors = [normalised(query, model.dimension, "query vector")]
        else:
            check_count(len(query), "any_of vectors", MAX_VECTORS_PER_SEARCH)
            vectors = [normalised(v, model.dimension, f"any_of vector {i}") for i, v in enumerate(query)]
        return await self._ranked(catalog, model, vectors, top_k, filter_spec, exclude, min_score)

    async def _ranked(
        self,
        catalog: str,
        model: ModelId,
        vectors: list[Floats],
        top_k: int,
        spec: FilterSpec,
        exclude: str | None,
        min_score: float,
    ) -> list[Hit]:
        """Best image per product across all query vectors, re-fetching until the top_k is settled.

        After a fetch of `limit` images per vector, any (product, vector) pair
        not seen scores below the last score of that vector's page when the
        page was full. So the answer is final once the k-th best product
        scores at least that bound (always true for a single vector with k
        products), or the bound is already below min_score, or no page was full.
        """
        ceiling = self._store.max_search_limit
        limit = min(top_k * OVERFETCH, ceiling)
        while True:
            pages = await self._store.search(catalog, model, VectorQuery(vectors, limit, spec, exclude))
            best: dict[str, Hit] = {}
            for page in pages:
                for match in page:
                    held = best.get(match.product_id)
                    if held is None or match.score > held.score:
                        best[match.product_id] = match
            ranked = sorted(best.values(), key=lambda m: (-m.score, m.product_id))
            qualified = [m for m in ranked if m.score >= min_score]
            full_pages = [page for page in pages if len(page) >= limit]
            if not full_pages or limit >= ceiling:
                break
            bound = max(page[-1].score for page in full_pages)
            if bound < min_score or (len(qualified) >= top_k and qualified[top_k - 1].score >= bound):
                break
            limit = min(limit * GROWTH, ceiling)
        return qualified[:top_k]

    async def upsert(
        self,
        catalog: str,
        model: ModelId,
        products: Sequence[tuple[ProductRecord, Sequence[Image]]],
        deadline: float | None = None,
    ) -> tuple[int, int]:
        check_catalog(catalog)
        validate_model(model)
        check_count(len(products), "products", MAX_PRODUCTS_PER_UPSERT)
        seen: set[str] = set()
        checked: list[tuple[ProductRecord, Sequence[Image]]] = []
        for product, images in products:
            if product.product_id in seen:
                raise InvalidArgument(f"product {product.product_id!r} appears more than once in one request")
            seen.add(product.product_id)
            checked.append((product, validate_product(product, images, model.dimension)))
        return await self._store.upsert(catalog, model, checked, deadline)

    async def delete(
        self, catalog: str, model: ModelId, product_ids: Sequence[str], deadline: float | None = None
    ) -> tuple[list[str], list[str]]:
        check_catalog(catalog)
        validate_model(model)
        check_count(len(product_ids), "product_ids", MAX_IDS_PER_DELETE)
        for pid in product_ids:
            check_product_id(pid)
        return await self._store.delete(catalog, model, product_ids, deadline)

    async def get(self, catalog: str, model: ModelId, product_id: str) -> ProductRecord:
        check_catalog(catalog)
        validate_model(model)
        if not product_id:
            raise InvalidArgument("product_id must not be empty")
        check_product_id(product_id)
        product = await self._store.get(catalog, model, product_id)
        if product is None:
            raise NotFound(f"product {product_id!r} not found (model {model.name} v{model.version})")
        return product

    async def drop_catalog(self, catalog: str, model: ModelId) -> bool:
        if not check_catalog(catalog):
            raise InvalidArgument("the default catalog cannot be dropped; delete its products instead")
        validate_model(model)
        return await self._store.drop(catalog, model)
