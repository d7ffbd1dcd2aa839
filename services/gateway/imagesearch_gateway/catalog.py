"""Catalog writes and reads: upsert (embed every image, then write whole products), delete, get,
drop a catalog. Every write runs inside the cache's `writing(catalog)`: no cached answer from before it,
or from while it may be landing, is served after it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from imagesearch.common.errors import InvalidArgument, Unavailable
from imagesearch.common.types import Floats, ImageErrorReason, ModelId, ProductRecord, Region
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.contracts.limits import (
    MAX_IDS_PER_DELETE,
    MAX_PRODUCTS_PER_UPSERT,
    check_catalog,
    check_count,
    check_product_id,
)
from imagesearch_gateway.models import ServedModel
from imagesearch_gateway.ports import Core, Embeddings, ImageFault, ImageVector, Lookup, Ports

# Images per Embed call (Triton's max_batch_size); bigger writes are split.
EMBED_CHUNK_IMAGES = 32
# Nearest products examined per image by the duplicate check.
DUPLICATE_CANDIDATES = 5


@dataclass(frozen=True)
class ProductUpsert:
    product: ProductRecord
    # (encoded bytes, uri) per image; uri "" means "<product_id>#<index>".
    images: list[tuple[bytes, str]]


@dataclass(frozen=True)
class ImageFailure:
    index: int
    reason: ImageErrorReason
    message: str


@dataclass(frozen=True)
class ProductOutcome:
    product_id: str
    ok: bool
    error: str = ""
    image_failures: list[ImageFailure] = field(default_factory=list)
    images_indexed: int = 0
    # (product_id, same-product probability), most likely first.
    possible_duplicates: list[tuple[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class CatalogOptions:
    max_images_per_product: int = 32
    # Also index each image trimmed to its object: shoppers' queries are cropped tight to the
    # product, catalog shots show it on a plain background (docs/quality.md, "Index side").
    index_object_crops: bool = True


@dataclass
class IngestCounts:
    """What UpsertProducts has done since start (the gateway's /metrics reads it)."""

    ok: int = 0
    failed: int = 0
    image_failures: Counter[str] = field(default_factory=Counter)  # by reason, lower case

    def count(self, outcomes: Sequence[ProductOutcome]) -> None:
        for outcome in outcomes:
            if outcome.ok:
                self.ok += 1
            else:
                self.failed += 1
            self.image_failures.update(failure.reason.name.lower() for failure in outcome.image_failures)


# Per image: its vectors (as sent, then trimmed when enabled), or its one fault.
Views = list[Floats] | ImageFault


class CatalogCore(Core[CatalogOptions]):
    def __init__(self, ports: Ports, options: CatalogOptions) -> None:
        super().__init__(ports, options)
        self.ingested = IngestCounts()

    async def upsert(
        self, items: Sequence[ProductUpsert], catalog: str = "", duplicate_threshold: float = 0.0
    ) -> list[ProductOutcome]:
        """Embed every image, then write whole products; a product with a bad image is not written."""
        try:
            outcomes = await self._upsert(items, catalog, duplicate_threshold)
        except BaseException:
            self.ingested.failed += len(items)  # nothing of the request was written
            raise
        self.ingested.count(outcomes)
        return outcomes

    async def _upsert(
        self, items: Sequence[ProductUpsert], catalog: str, duplicate_threshold: float
    ) -> list[ProductOutcome]:
        check_catalog(catalog)
        if not (math.isfinite(duplicate_threshold) and 0.0 <= duplicate_threshold <= 1.0):
            raise InvalidArgument(f"duplicate_threshold must lie in [0, 1], got {duplicate_threshold}")
        _validate(items)
        limit = self._options.max_images_per_product
        outcomes: dict[str, ProductOutcome] = {}
        flat: list[tuple[int, int, bytes]] = []  # (product position, image index, bytes)
        for position, item in enumerate(items):
            pid = item.product.product_id
            if not item.images:
                outcomes[pid] = ProductOutcome(pid, ok=False, error="product has no images")
            elif len(item.images) > limit:
                outcomes[pid] = ProductOutcome(
                    pid, ok=False, error=f"product has {len(item.images)} images; the limit is {limit}"
                )
            else:
                flat.extend((position, index, content) for index, (content, _) in enumerate(item.images))
        if not flat:
            return [outcomes[item.product.product_id] for item in items]

        embedded, served = await self._embed_views([content for _, _, content in flat])
        per_product: dict[int, list[tuple[int, Views]]] = {}
        for (position, index, _), views in zip(flat, embedded):
            per_product.setdefault(position, []).append((index, views))

        writes: list[tuple[ProductRecord, list[ImageVector]]] = []
        for position, results in per_product.items():
            item = items[position]
            pid = item.product.product_id
            failures = [ImageFailure(index, r.reason, r.message) for index, r in results if isinstance(r, ImageFault)]
            if failures:
                outcomes[pid] = ProductOutcome(
                    pid,
                    ok=False,
                    error=f"{len(failures)} of {len(results)} images rejected; product not written",
                    image_failures=failures,
                )
                continue
            uris = [item.images[index][1] or f"{pid}#{index}" for index, _ in results]
            vectors = [views for _, views in results if not isinstance(views, ImageFault)]
            # Every image as sent first (rows <pid>#0..n-1, as without object crops), then the
            # trimmed twins under the same uris: the retriever keeps a product's best row.
            images = [(uri, views[view]) for view in range(len(vectors[0])) for uri, views in zip(uris, vectors)]
            writes.append((dataclasses.replace(item.product, image_uris=tuple(uris)), images))
            outcomes[pid] = ProductOutcome(pid, ok=True, images_indexed=len(uris))

        if writes and duplicate_threshold > 0:
            # Before writing: the catalog as it was, without the products of this request.
            for record, images in writes:
                found = await self._duplicates(served, catalog, record.product_id, images, duplicate_threshold)
                outcomes[record.product_id] = dataclasses.replace(
                    outcomes[record.product_id], possible_duplicates=found
                )
        if writes:
            async with self._cache.writing(catalog):
                await self._retriever.upsert(served.id, writes, catalog)
        return [outcomes[item.product.product_id] for item in items]

    async def _embed_views(self, contents: list[bytes]) -> tuple[list[Views], ServedModel]:
        """Per image its views, and the one model that made them all.

        Both views see the same bytes, so a bad image fails both: it is reported once. Vectors of
        two models never go into one write: a rollout between calls fails the request UNAVAILABLE.
        """
        embedded: list[Views] = []
        made_by: set[tuple[ModelId, ScoreCalibration | None]] = set()
        for start in range(0, len(contents), EMBED_CHUNK_IMAGES):
            chunk: list[tuple[bytes, Region | None]] = [(c, None) for c in contents[start : start + EMBED_CHUNK_IMAGES]]
            calls = [self._embedder.embed(chunk)]
            if self._options.index_object_crops:
                calls.append(self._embedder.embed(chunk, trim_to_object=True))
            replies: list[Embeddings] = list(await asyncio.gather(*calls))
            made_by |= {(reply.model, reply.calibration) for reply in replies}
            for views in zip(*(reply.images for reply in replies)):
                fault = next((v.vector for v in views if isinstance(v.vector, ImageFault)), None)
                embedded.append(
                    fault if fault is not None else [v.vector for v in views if not isinstance(v.vector, ImageFault)]
                )
        if len(made_by) > 1:
            versions = sorted(model.version for model, _ in made_by)
            raise Unavailable(f"the embedder's model changed during the request (versions {versions}); retry")
        [(model, calibration)] = made_by
        return embedded, self._models.observe(model, calibration)

    async def _duplicates(
        self, served: ServedModel, catalog: str, product_id: str, images: list[ImageVector], threshold: float
    ) -> list[tuple[str, float]]:
        """Existing products whose best image matches any of these images with probability >= threshold."""
        best: dict[str, float] = {}
        for _, vector in images:
            for hit in await self._retriever.search(served.id, Lookup(catalog, DUPLICATE_CANDIDATES, vector=vector)):
                probability = served.calibration.probability(hit.score)
                if hit.product_id != product_id and probability >= threshold:
                    best[hit.product_id] = max(probability, best.get(hit.product_id, 0.0))
        return sorted(best.items(), key=lambda item: -item[1])

    async def delete(self, product_ids: Sequence[str], catalog: str = "") -> tuple[list[str], list[str]]:
        check_catalog(catalog)
        check_count(len(product_ids), "product_ids", MAX_IDS_PER_DELETE)
        for pid in product_ids:
            check_product_id(pid)
        async with self._cache.writing(catalog):
            return await self._retriever.delete(self._models.current.id, list(dict.fromkeys(product_ids)), catalog)

    async def get(self, product_id: str, catalog: str = "") -> ProductRecord:
        check_catalog(catalog)
        check_product_id(product_id)
        return await self._retriever.get(self._models.current.id, product_id, catalog)

    async def delete_catalog(self, catalog: str) -> bool:
        if not check_catalog(catalog):
            raise InvalidArgument("name the catalog to delete; the default catalog cannot be deleted")
        async with self._cache.writing(catalog):
            return await self._retriever.drop_catalog(self._models.current.id, catalog)


def _validate(items: Sequence[ProductUpsert]) -> None:
    check_count(len(items), "products", MAX_PRODUCTS_PER_UPSERT)
    seen: set[str] = set()
    for position, item in enumerate(items):
        pid = item.product.product_id
        try:
            check_product_id(pid)
        except InvalidArgument as err:
            raise InvalidArgument(f"products[{position}]: {err.message}") from None
        if pid in seen:
            raise InvalidArgument(f"product_id {pid!r} appears more than once in the request")
        seen.add(pid)
        if not math.isfinite(item.product.price) or item.product.price < 0:
            raise InvalidArgument(f"product {pid!r}: price must be a finite number >= 0, got {item.product.price}")
