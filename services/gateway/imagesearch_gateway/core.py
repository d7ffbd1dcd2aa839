"""The gateway's logic in plain Python types: search with caching, and catalog writes."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from imagesearch.common.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from imagesearch.common.types import FilterSpec, Hit, ModelId, ProductRecord, Region
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.contracts.limits import check_catalog, check_min_score, check_product_id, check_top_k
from imagesearch.v1 import common_pb2
from imagesearch_gateway.cache import ResultCache
from imagesearch_gateway.category import VOTERS, CategoryPrediction, predict_category, rerank_by_category
from imagesearch_gateway.clients import EmbedderClient, ImageFault, RetrieverClient
from imagesearch_gateway.hedge import hedge_with_whole_photo

# The embedder takes at most this many images per call; bigger catalog writes are split.
EMBED_CHUNK_IMAGES = 32
# Nearest products examined per image by the duplicate check.
DUPLICATE_CANDIDATES = 5


@dataclass(frozen=True)
class SearchQuery:
    image: bytes | None = None
    product_id: str | None = None
    region: Region | None = None
    top_k: int = 0
    filter: FilterSpec = FilterSpec()
    min_score: float = 0.0
    skip_cache: bool = False
    catalog: str = ""
    restrict_to_predicted_category: bool = False


@dataclass(frozen=True)
class SearchOutcome:
    hits: list[Hit]
    model: ModelId
    cache_hit: bool
    predicted_category: CategoryPrediction | None = None


@dataclass(frozen=True)
class ProductUpsert:
    product: ProductRecord
    # (encoded bytes, uri) per image; uri "" means "<product_id>#<index>".
    images: list[tuple[bytes, str]]


@dataclass(frozen=True)
class ImageFailure:
    index: int
    reason: int
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


class ModelSource(Protocol):
    """The model the embedder serves now, and how its scores become same-product probabilities
    (its own calibration, else the SAME_PRODUCT_CALIBRATION fallback): read at each call, as
    both change together when the embedder rolls to another model version."""

    @property
    def model(self) -> ModelId: ...

    @property
    def calibration(self) -> ScoreCalibration: ...


def _fault_error(fault: ImageFault) -> Exception:
    """Map the embedder's verdict on a query image onto the status the caller sees."""
    if fault.reason == common_pb2.IMAGE_ERROR_REASON_TOO_LARGE:
        return ResourceExhausted(f"query image rejected: {fault.message}")
    return InvalidArgument(f"query image rejected ({fault.reason_name}): {fault.message}")


class SearchCore:
    def __init__(
        self,
        embedder: EmbedderClient,
        retriever: RetrieverClient,
        cache: ResultCache,
        models: ModelSource,
        default_top_k: int,
        max_top_k: int,
        localize_queries: bool,
        category_boost: float,
        rerank_depth: int,
        whole_photo_slots: int,
        whole_photo_below: float,
    ) -> None:
        self._localize = localize_queries
        self._whole_photo_slots = whole_photo_slots
        self._whole_photo_below = whole_photo_below
        self._category_boost = category_boost
        self._rerank_depth = rerank_depth
        self._embedder = embedder
        self._retriever = retriever
        self._cache = cache
        self._models = models
        self._default_top_k = default_top_k
        self._max_top_k = max_top_k

    def _validated(self, query: SearchQuery) -> SearchQuery:
        check_catalog(query.catalog)
        if (query.image is None) == (query.product_id is None):
            raise InvalidArgument("set exactly one of image or product_id")
        if query.image is not None and not query.image:
            raise InvalidArgument("image is empty")
        if query.product_id is not None:
            check_product_id(query.product_id)
            if query.region is not None:
                raise InvalidArgument("region applies to an image query, not to product_id")
        check_min_score(query.min_score)
        return dataclasses.replace(query, top_k=check_top_k(query.top_k))

    def _fingerprint(self, query: SearchQuery, model: ModelId, calibration: ScoreCalibration) -> str:
        """Identity of a request for the cache: the image's SHA-256 plus the normalised request."""
        subject = (
            "image:" + hashlib.sha256(query.image).hexdigest()
            if query.image is not None
            else f"product:{query.product_id}"
        )
        canonical = json.dumps(
            {
                "q": subject,
                "region": dataclasses.astuple(query.region) if query.region else None,
                "top_k": query.top_k,
                "filter": dataclasses.asdict(query.filter),
                "min_score": round(query.min_score, 6),
                "restrict": query.restrict_to_predicted_category,
                "model": dataclasses.astuple(model),
                # Cached hits carry probabilities: a changed calibration must not serve old ones.
                "calibration": dataclasses.astuple(calibration),
                "localize": self._localize,
                "rerank": (self._category_boost, self._rerank_depth),
                "hedge": (self._whole_photo_slots, self._whole_photo_below),
            },
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    async def search(self, query: SearchQuery) -> SearchOutcome:
        query = self._validated(query)
        model, calibration = self._models.model, self._models.calibration
        fingerprint = self._fingerprint(query, model, calibration)
        cached, generation = await self._cache.get(query.catalog, fingerprint, read=not query.skip_cache)
        if cached is not None:
            hits, prediction = _outcome_from_json(cached)
            return SearchOutcome(hits=hits, model=model, cache_hit=True, predicted_category=prediction)
        hits, prediction = await self._search_uncached(query, model, calibration)
        hits = [dataclasses.replace(h, same_product_probability=calibration.probability(h.score)) for h in hits]
        if generation is not None:
            await self._cache.put(query.catalog, fingerprint, generation, _outcome_to_json(hits, prediction))
        return SearchOutcome(hits=hits, model=model, cache_hit=False, predicted_category=prediction)

    async def _search_uncached(
        self, query: SearchQuery, model: ModelId, calibration: ScoreCalibration
    ) -> tuple[list[Hit], CategoryPrediction | None]:
        target: dict[str, object] = {"catalog": query.catalog}
        whole: np.ndarray | None = None
        if query.product_id is not None:
            target["product_id"] = query.product_id
        else:
            target["vector"], whole = await self._query_vectors(query, model)
        unfiltered = query.filter.empty
        # The vote looks at the nearest products of the whole catalog, before any filter; unfiltered,
        # the same call brings the candidates the category ranking picks the top_k from.
        depth = max(VOTERS, query.top_k, self._rerank_depth if self._category_boost > 0 else 0)
        neighbours = await self._retriever.search(
            model,
            top_k=depth if unfiltered else VOTERS,
            filter_spec=FilterSpec(),
            min_score=-1.0,
            **target,  # type: ignore[arg-type]
        )
        prediction = predict_category(neighbours)
        if unfiltered and not query.restrict_to_predicted_category:
            ranked = rerank_by_category(neighbours, prediction, self._category_boost)
            if whole is not None and self._unconvincing(ranked, calibration):
                whole_photo = await self._retriever.search(
                    model, vector=whole, top_k=VOTERS, filter_spec=FilterSpec(), min_score=-1.0, catalog=query.catalog
                )
                ranked = hedge_with_whole_photo(ranked, whole_photo, self._whole_photo_slots, query.top_k)
            return [h for h in ranked if h.score >= query.min_score][: query.top_k], prediction
        spec = query.filter
        if query.restrict_to_predicted_category:
            if prediction is None:
                return [], None
            spec = _with_category(spec, prediction.category)
            if spec is None:
                return [], prediction  # the caller's categories exclude the predicted one
        hits = await self._retriever.search(
            model,
            top_k=query.top_k,
            filter_spec=spec,
            min_score=query.min_score,
            **target,  # type: ignore[arg-type]
        )
        return rerank_by_category(hits, prediction, self._category_boost), prediction

    def _unconvincing(self, ranked: list[Hit], calibration: ScoreCalibration) -> bool:
        """Worth hedging: the best hit is probably not the photographed product."""
        return (
            self._whole_photo_slots > 0
            and bool(ranked)
            and calibration.probability(ranked[0].score) < self._whole_photo_below
        )

    async def _query_vectors(self, query: SearchQuery, model: ModelId) -> tuple[np.ndarray, np.ndarray | None]:
        """The query's vector, and the whole photo's when the embedder localised the product."""
        assert query.image is not None
        [(result, whole)] = await self._embedder.embed_with_whole(
            [(query.image, query.region)], localize=self._localize
        )
        if isinstance(result, ImageFault):
            raise _fault_error(result)
        for vector in (result, whole):
            if vector is not None and vector.shape[0] != model.dimension:
                raise FailedPrecondition(
                    f"embedder returned {vector.shape[0]}-d vectors but model {model.name} v{model.version} "
                    f"declares {model.dimension}; the embedder's model changed under the gateway"
                )
        return result, whole


class CatalogCore:
    def __init__(
        self,
        embedder: EmbedderClient,
        retriever: RetrieverClient,
        cache: ResultCache,
        models: ModelSource,
        max_images_per_product: int,
        index_object_crops: bool,
    ) -> None:
        self._embedder = embedder
        self._retriever = retriever
        self._cache = cache
        self._models = models
        self._max_images = max_images_per_product
        # Also index each image trimmed to its object: shoppers' queries are cropped tight to the
        # product, catalog shots show it on a plain background (docs/quality.md, "Index side").
        self._object_crops = index_object_crops

    def _validate(self, items: Sequence[ProductUpsert]) -> None:
        if not items:
            raise InvalidArgument("products must not be empty")
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

    async def upsert(
        self, items: Sequence[ProductUpsert], catalog: str = "", duplicate_threshold: float = 0.0
    ) -> list[ProductOutcome]:
        """Embed every image, then write whole products; a product with a bad image is not written."""
        check_catalog(catalog)
        if not (math.isfinite(duplicate_threshold) and 0.0 <= duplicate_threshold <= 1.0):
            raise InvalidArgument(f"duplicate_threshold must lie in [0, 1], got {duplicate_threshold}")
        self._validate(items)
        model = self._models.model
        outcomes: dict[str, ProductOutcome] = {}
        flat: list[tuple[int, int, bytes]] = []  # (product position, image index, bytes)
        for position, item in enumerate(items):
            pid = item.product.product_id
            if not item.images:
                outcomes[pid] = ProductOutcome(pid, ok=False, error="product has no images")
            elif len(item.images) > self._max_images:
                outcomes[pid] = ProductOutcome(
                    pid, ok=False, error=f"product has {len(item.images)} images; the limit is {self._max_images}"
                )
            else:
                flat.extend((position, index, content) for index, (content, _) in enumerate(item.images))

        embedded = await self._embed_views([content for _, _, content in flat])
        per_product: dict[int, list[tuple[int, list[np.ndarray] | ImageFault]]] = {}
        for (position, index, _), views in zip(flat, embedded):
            per_product.setdefault(position, []).append((index, views))

        writes: list[tuple[ProductRecord, list[tuple[str, np.ndarray]]]] = []
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
            record = dataclasses.replace(item.product, image_uris=tuple(uris))
            writes.append((record, images))
            outcomes[pid] = ProductOutcome(pid, ok=True, images_indexed=len(uris))

        if writes and duplicate_threshold > 0:
            # Before writing: the catalog as it was, without the products of this request.
            for record, images in writes:
                found = await self._duplicates(model, catalog, record.product_id, images, duplicate_threshold)
                outcomes[record.product_id] = dataclasses.replace(
                    outcomes[record.product_id], possible_duplicates=found
                )
        if writes:
            try:
                await self._retriever.upsert(model, writes, catalog)
            finally:
                # Even a failed write may have landed partly: never trust older cached answers.
                await self._cache.invalidate(catalog)
        return [outcomes[item.product.product_id] for item in items]

    async def _embed_views(self, contents: list[bytes]) -> list[list[np.ndarray] | ImageFault]:
        """Per image: its vectors (as sent, then trimmed to the object when enabled), or its one fault.

        Both views see the same bytes, so a bad image fails both: it is reported once.
        """
        embedded: list[list[np.ndarray] | ImageFault] = []
        for start in range(0, len(contents), EMBED_CHUNK_IMAGES):
            chunk: list[tuple[bytes, Region | None]] = [(c, None) for c in contents[start : start + EMBED_CHUNK_IMAGES]]
            calls = [self._embedder.embed(chunk)]
            if self._object_crops:
                calls.append(self._embedder.embed(chunk, trim_to_object=True))
            for views in zip(*await asyncio.gather(*calls)):
                fault = next((v for v in views if isinstance(v, ImageFault)), None)
                embedded.append(fault if fault is not None else list(views))  # type: ignore[arg-type]
        return embedded

    async def _duplicates(
        self, model: ModelId, catalog: str, product_id: str, images: list[tuple[str, np.ndarray]], threshold: float
    ) -> list[tuple[str, float]]:
        """Existing products whose best image matches any of these images with probability >= threshold."""
        best: dict[str, float] = {}
        calibration = self._models.calibration
        for _, vector in images:
            for hit in await self._retriever.search(
                model,
                vector=vector,
                top_k=DUPLICATE_CANDIDATES,
                filter_spec=FilterSpec(),
                min_score=-1.0,
                catalog=catalog,
            ):
                probability = calibration.probability(hit.score)
                if hit.product_id != product_id and probability >= threshold:
                    best[hit.product_id] = max(probability, best.get(hit.product_id, 0.0))
        return sorted(best.items(), key=lambda item: -item[1])

    async def delete(self, product_ids: Sequence[str], catalog: str = "") -> tuple[list[str], list[str]]:
        check_catalog(catalog)
        if not product_ids:
            raise InvalidArgument("product_ids must not be empty")
        for pid in product_ids:
            check_product_id(pid)
        try:
            return await self._retriever.delete(self._models.model, list(dict.fromkeys(product_ids)), catalog)
        finally:
            await self._cache.invalidate(catalog)

    async def get(self, product_id: str, catalog: str = "") -> ProductRecord:
        check_catalog(catalog)
        check_product_id(product_id)
        return await self._retriever.get(self._models.model, product_id, catalog)

    async def delete_catalog(self, catalog: str) -> bool:
        if not check_catalog(catalog):
            raise InvalidArgument("name the catalog to delete; the default catalog cannot be deleted")
        try:
            return await self._retriever.drop_catalog(self._models.model, catalog)
        finally:
            await self._cache.invalidate(catalog)


def _with_category(spec: FilterSpec, category: str) -> FilterSpec | None:
    """`spec` AND category == `category`; None when that can match nothing."""
    if spec.categories and category not in spec.categories:
        return None
    return dataclasses.replace(spec, categories=(category,))


def _outcome_to_json(hits: list[Hit], prediction: CategoryPrediction | None) -> bytes:
    return json.dumps(
        {
            "hits": [dataclasses.asdict(hit) for hit in hits],
            "prediction": dataclasses.asdict(prediction) if prediction else None,
        }
    ).encode()


def _outcome_from_json(raw: bytes) -> tuple[list[Hit], CategoryPrediction | None]:
    body = json.loads(raw)
    prediction = CategoryPrediction(**body["prediction"]) if body["prediction"] else None
    return [Hit(**item) for item in body["hits"]], prediction
