"""Search by photo or by product ("more like this"), with the result cache in front.

A search reads the served model once and keeps that snapshot (model + calibration) for the
cache key, the retrieval and the probabilities. When the embedder's answer names another model
(a rollout), the search follows that model, since it made the query vector.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from imagesearch.common.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted, Unavailable
from imagesearch.common.types import FilterSpec, Floats, Hit, ImageErrorReason, ModelId, Region
from imagesearch.contracts.limits import check_catalog, check_min_score, check_product_id, check_top_k
from imagesearch_gateway import cache_codec
from imagesearch_gateway.models import ServedModel
from imagesearch_gateway.ports import Core, ImageFault, Lookup, ObjectVector
from imagesearch_gateway.ranking import (
    VOTERS,
    CategoryPrediction,
    DetectedObject,
    fuse_with_tiles,
    hedge_with_whole_photo,
    predict_category,
    rerank_by_category,
    zoom_tiles,
)

log = logging.getLogger(__name__)


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
    object_index: int = 0  # which of the photo's objects to search (0: the main one)


@dataclass(frozen=True)
class SearchOutcome:
    hits: list[Hit]
    model: ModelId
    cache_hit: bool
    predicted_category: CategoryPrediction | None = None
    objects: list[DetectedObject] = field(default_factory=list)
    searched_box: Region | None = None  # None for a product_id query


@dataclass(frozen=True)
class _Query:
    """What the embedder made of a photo: the vector to search, the whole photo's (to hedge with),
    the box searched, the photo's objects, and its most conspicuous part (to look at again)."""

    vector: Floats
    whole: Floats | None
    box: Region
    objects: tuple[ObjectVector, ...]
    popout: Region | None = None


@dataclass(frozen=True)
class SearchOptions:
    """How answers are made (GATEWAY_* settings); part of the cache key."""

    # Crop query photos to the product the model finds before matching (a second model evaluation).
    localize_queries: bool = True
    # After the best match, lift the predicted category's products by this x the top-10 score spread.
    category_boost: float = 0.5
    # Nearest products fetched for that ranking when the caller asks for fewer.
    rerank_depth: int = 50
    # Places of the first page that go to the whole photo's matches when the best hit is unconvincing...
    whole_photo_slots: int = 2
    # ... i.e. its same-product probability is below this.
    whole_photo_below: float = 0.5
    # List the photo's objects (a model evaluation per further object found, and a vote for each).
    detect_objects: bool = True
    # When the crop is unconvincing (whole_photo_below), also search the photo's four corners, each this
    # share of its side (0 = never: 9.2 model evaluations more for those queries, 5.2 unlocalised)...
    zoom_tile_side: float = 0.6
    # ... a tile's score counting this many logits of the same-product calibration less than the crop's;
    zoom_tile_discount: float = 1.2
    # ... each tile looked at as a photo is: its product found inside it, and both the tile and that
    # crop searched (twice the model work of plain tiles; small products need the closer crop).
    zoom_tile_localize: bool = True
    # ... and the photo's most conspicuous part (the embedder's pixel-only second guess at the product),
    # looked at as a localised tile is (2.3 model evaluations more for those queries).
    zoom_popout: bool = True


def _validated(query: SearchQuery) -> SearchQuery:
    check_catalog(query.catalog)
    if (query.image is None) == (query.product_id is None):
        raise InvalidArgument("set exactly one of image or product_id")
    if query.image is not None and not query.image:
        raise InvalidArgument("image is empty")
    if query.product_id is not None:
        check_product_id(query.product_id)
        if query.region is not None:
            raise InvalidArgument("region applies to an image query, not to product_id")
    if query.object_index < 0:
        raise InvalidArgument(f"object_index must be 0 (the main object) or more, got {query.object_index}")
    if query.object_index and (query.product_id is not None or query.region is not None):
        raise InvalidArgument("object_index names an object of a photo searched without region; set one or the other")
    check_min_score(query.min_score)
    return dataclasses.replace(query, top_k=check_top_k(query.top_k))


def _cache_request(query: SearchQuery) -> dict[str, Any]:
    """The normalised request, as the cache key sees it (the image by its SHA-256)."""
    subject = (
        "image:" + hashlib.sha256(query.image).hexdigest() if query.image is not None else f"product:{query.product_id}"
    )
    return {
        "q": subject,
        "region": dataclasses.astuple(query.region) if query.region else None,
        "top_k": query.top_k,
        "filter": dataclasses.asdict(query.filter),
        "min_score": round(query.min_score, 6),
        "restrict": query.restrict_to_predicted_category,
        "object": query.object_index,
    }


def _fault_error(fault: ImageFault) -> Exception:
    """The embedder's verdict on a query image, as the status the caller sees."""
    if fault.reason is ImageErrorReason.TOO_LARGE:
        return ResourceExhausted(f"query image rejected: {fault.message}")
    return InvalidArgument(f"query image rejected ({fault.reason.name}): {fault.message}")


def _with_category(spec: FilterSpec, category: str) -> FilterSpec | None:
    """`spec` AND category == `category`; None when that can match nothing."""
    if spec.categories and category not in spec.categories:
        return None
    return dataclasses.replace(spec, categories=(category,))


WHOLE_PHOTO = Region(0.0, 0.0, 1.0, 1.0)


class SearchCore(Core[SearchOptions]):
    async def search(self, query: SearchQuery) -> SearchOutcome:
        query = _validated(query)
        served = self._models.current
        request = _cache_request(query)
        fingerprint = cache_codec.fingerprint(request, served, self._options)
        cached, token = await self._cache.get(query.catalog, fingerprint, read=not query.skip_cache)
        if cached is not None:
            answer = cache_codec.decode(cached)
            if answer is not None:
                return SearchOutcome(
                    hits=answer.hits,
                    model=served.id,
                    cache_hit=True,
                    predicted_category=answer.prediction,
                    objects=answer.objects,
                    searched_box=answer.box,
                )
            self._cache.discard_corrupt()
        photo: _Query | None = None
        if query.image is not None:
            # A search needs the retriever: known down, fail now, not after embedding the photo.
            self._retriever.check_available()
            photo, made_by = await self._query_vectors(query)
            if made_by != served:  # a rollout: the model that made the vector decides, and keys the answer
                served, fingerprint = made_by, cache_codec.fingerprint(request, made_by, self._options)
        (hits, prediction), objects = await asyncio.gather(
            self._ranked(query, served, photo),
            self._others(query, served, photo),
        )
        if photo is not None and photo.objects:
            objects[query.object_index] = dataclasses.replace(objects[query.object_index], category=prediction)
        hits = [dataclasses.replace(h, same_product_probability=served.calibration.probability(h.score)) for h in hits]
        answer = cache_codec.Answer(hits, prediction, objects, photo.box if photo else None)
        if token is not None:
            await self._cache.put(query.catalog, fingerprint, token, cache_codec.encode(answer))
        return SearchOutcome(
            hits=hits,
            model=served.id,
            cache_hit=False,
            predicted_category=prediction,
            objects=objects,
            searched_box=answer.box,
        )

    async def _query_vectors(self, query: SearchQuery) -> tuple[_Query, ServedModel]:
        """What to search for the photo, and the model that made its vectors."""
        assert query.image is not None
        localize = self._options.localize_queries
        detect = localize and self._options.detect_objects and query.region is None
        embeddings = await self._embedder.embed([(query.image, query.region)], localize=localize, detect_objects=detect)
        [image] = embeddings.images
        if isinstance(image.vector, ImageFault):
            raise _fault_error(image.vector)
        made_by = self._models.observe(embeddings.model, embeddings.calibration)
        if query.object_index:
            if query.object_index >= len(image.objects):
                raise InvalidArgument(
                    f"object_index {query.object_index} names no object of this photo: it has "
                    f"{len(image.objects)} (SearchResponse.objects lists them)"
                )
            chosen = image.objects[query.object_index]
            return _Query(chosen.vector, None, chosen.box, image.objects), made_by
        box = image.box or query.region or WHOLE_PHOTO
        return _Query(image.vector, image.whole, box, image.objects, image.popout), made_by

    async def _others(self, query: SearchQuery, served: ServedModel, photo: _Query | None) -> list[DetectedObject]:
        """The photo's objects, each but the searched one with the category its nearest products vote for."""
        if photo is None or not photo.objects:
            return []

        async def vote(index: int, vector: Floats) -> CategoryPrediction | None:
            if index == query.object_index:
                return None  # the search's own vote (filled in by the caller)
            return predict_category(
                await self._retriever.search(served.id, Lookup(query.catalog, VOTERS, vector=vector))
            )

        votes = await asyncio.gather(*(vote(i, o.vector) for i, o in enumerate(photo.objects)))
        return [DetectedObject(i, o.box, o.salience, v) for i, (o, v) in enumerate(zip(photo.objects, votes))]

    async def _ranked(
        self, query: SearchQuery, served: ServedModel, photo: _Query | None
    ) -> tuple[list[Hit], CategoryPrediction | None]:
        o = self._options
        vector, whole = (photo.vector, photo.whole) if photo else (None, None)
        model, catalog = served.id, query.catalog
        unfiltered = query.filter.empty
        # The vote looks at the nearest products of the whole catalog, before any filter; unfiltered,
        # the same call brings the candidates the category ranking picks the top_k from.
        depth = max(VOTERS, query.top_k, o.rerank_depth if o.category_boost > 0 else 0)
        subject = Lookup(catalog, depth if unfiltered else VOTERS, vector=vector, product_id=query.product_id)
        neighbours = await self._retriever.search(model, subject)
        prediction = predict_category(neighbours)
        if unfiltered and not query.restrict_to_predicted_category:
            if whole is not None and query.image is not None and query.region is None and not query.object_index:
                popout = photo.popout if photo else None
                neighbours = await self._zoomed(query.image, served, neighbours, Lookup(catalog, depth), popout)
            ranked = rerank_by_category(neighbours, prediction, o.category_boost)
            if whole is not None and o.whole_photo_slots > 0 and self._unconvincing(ranked, served):
                whole_photo = await self._retriever.search(model, Lookup(catalog, VOTERS, vector=whole))
                ranked = hedge_with_whole_photo(ranked, whole_photo, o.whole_photo_slots, query.top_k)
            return [h for h in ranked if h.score >= query.min_score][: query.top_k], prediction
        spec = query.filter
        if query.restrict_to_predicted_category:
            if prediction is None:
                return [], None
            restricted = _with_category(query.filter, prediction.category)
            if restricted is None:
                return [], prediction  # the caller's categories exclude the predicted one
            spec = restricted
        lookup = dataclasses.replace(subject, top_k=query.top_k, filter_spec=spec, min_score=query.min_score)
        hits = await self._retriever.search(model, lookup)
        return rerank_by_category(hits, prediction, o.category_boost), prediction

    async def _zoomed(
        self, image: bytes, served: ServedModel, hits: list[Hit], lookup: Lookup, popout: Region | None
    ) -> list[Hit]:
        """`hits` fused with the photo's zoom tiles' when the best is unconvincing (else `hits`): its
        four corners, and its most conspicuous part (`popout`, when the embedder found one)."""
        o = self._options
        tiles = zoom_tiles(o.zoom_tile_side) if o.zoom_tile_side > 0 else []
        looks = [(tile, o.zoom_tile_localize) for tile in tiles]
        if o.zoom_popout and popout is not None:
            looks.append((popout, True))  # as measured: the part's own look, and the product found in it
        if not looks or not self._unconvincing(hits, served):
            return hits
        try:
            embedded = await self._embedder.embed(
                [(image, region) for region, _ in looks], localize_in_region=[inside for _, inside in looks]
            )
        except (Unavailable, DeadlineExceeded, ResourceExhausted) as err:
            # The crop's answer stands; the tiles only ever add to it.
            log.warning("zoom tiles skipped: the embedder failed (%s)", err)
            return hits
        if embedded.model != served.id:
            return hits  # a rollout between the two calls: vectors of two models do not compare
        # A localised tile brings the crop inside it and the tile's own vector: both are searched, all
        # in one retriever call (each product at its best over them, as the fusion wants it).
        vectors = tuple(
            v
            for image in embedded.images
            if not isinstance(image.vector, ImageFault)
            for v in (image.vector, image.whole)
            if v is not None
        )
        if not vectors:
            return hits
        found = await self._retriever.search(served.id, dataclasses.replace(lookup, any_of=vectors))
        return fuse_with_tiles(hits, found, o.zoom_tile_discount / served.calibration.slope)

    def _unconvincing(self, ranked: list[Hit], served: ServedModel) -> bool:
        """Worth hedging (whole photo, zoom tiles): the best hit is probably not the photographed product."""
        return bool(ranked) and served.calibration.probability(ranked[0].score) < self._options.whole_photo_below
