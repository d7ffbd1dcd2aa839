"""SearchCore with in-memory ports: the cache in front, the calibration per model, the hedge, rollouts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from gateway.fakes import MODEL, FakeCache, FakeEmbedder, FakeRetriever, corrupt, hit, hits, ports, tracker
from imagesearch.common.errors import InvalidArgument, ResourceExhausted, Unavailable
from imagesearch.common.types import Hit, ImageErrorReason, ModelId, Region
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch_gateway.ports import EmbeddedImage, Embeddings, ImageFault
from imagesearch_gateway.ranking import zoom_tiles
from imagesearch_gateway.search import SearchCore, SearchOptions, SearchQuery

PLAIN = SearchOptions(localize_queries=False, category_boost=0.0, rerank_depth=0, whole_photo_slots=0)


def logistic(slope: float, intercept: float, score: float) -> float:
    return 1 / (1 + math.exp(-(slope * score + intercept)))


def two_lists(top_score: float) -> FakeRetriever:
    """The crop's vector finds c*, the whole photo's finds w*."""
    return FakeRetriever(
        lambda vector: (
            hits(*(f"c{i}" for i in range(12)), score=top_score)
            if vector is not None and vector[0] > 0
            else hits("w0", "w1", "w2")
        )
    )


@pytest.mark.parametrize(("top_score", "hedged"), [(0.25, True), (0.45, False)])
async def test_search_hedges_only_when_the_best_hit_is_unconvincing(top_score: float, hedged: bool) -> None:
    retriever = two_lists(top_score)
    calibration = ScoreCalibration(20.0, -6.0)  # p = 0.5 at score 0.3
    embedder = FakeEmbedder(whole=np.array([-1, 0, 0, 0], np.float32), calibration=calibration)
    models = tracker(calibration=calibration)
    options = SearchOptions(
        localize_queries=True, category_boost=0.0, rerank_depth=0, whole_photo_slots=2, zoom_tile_side=0.0
    )
    outcome = await SearchCore(ports(embedder, retriever, FakeCache(None), models), options).search(
        SearchQuery(image=b"photo")
    )
    ids = [h.product_id for h in outcome.hits]
    assert ids[0] == "c0" and len(ids) == 10
    assert (ids[8:] == ["w0", "w1"]) is hedged
    assert len(retriever.searches) == (2 if hedged else 1)  # the extra search only when it is needed


class TilingEmbedder(FakeEmbedder):
    """The crop's vector for the photo, a tile's for a region of it (and, localised inside, the crop
    found in the tile with the tile's own vector beside it); records the regions and the flags."""

    def __init__(self, calibration: ScoreCalibration, popout: Region | None = None) -> None:
        super().__init__(whole=np.array([-1, 0, 0, 0], np.float32), calibration=calibration, popout=popout)
        self.regions: list[list[Region | None]] = []
        self.localized_in_region: list[list[bool]] = []  # per call, per image

    async def embed(self, images: Sequence[tuple[bytes, Region | None]], **flags: Any) -> Embeddings:
        self.regions.append([region for _, region in images])
        given = flags.get("localize_in_region", False)
        inside = [given] * len(images) if isinstance(given, bool) else list(given)
        self.localized_in_region.append(inside)
        reply = await super().embed(images, **flags)
        crop, tile = np.array([0, 1, 0, 0], np.float32), np.array([0, 0, 1, 0], np.float32)
        return Embeddings(
            [
                (EmbeddedImage(crop, tile) if look_inside else EmbeddedImage(tile)) if region else e
                for e, (_, region), look_inside in zip(reply.images, images, inside)
            ],
            reply.model,
            reply.calibration,
        )


@pytest.mark.parametrize(("top_score", "zoomed"), [(0.25, True), (0.45, False)])
@pytest.mark.parametrize("localised", [True, False], ids=["tiles localised", "plain tiles"])
async def test_an_unconvincing_photo_is_also_searched_by_its_four_corners(
    top_score: float, zoomed: bool, localised: bool
) -> None:
    calibration = ScoreCalibration(20.0, -6.0)  # p = 0.5 at score 0.3; 1.2 logits = 0.06 in score
    embedder = TilingEmbedder(calibration)

    def found(vector: np.ndarray | None) -> list[Hit]:
        if vector is not None and vector[1] > 0:  # the crop found inside a tile
            return [hit("t0", 0.9), hit("c1", top_score + 0.03)]
        if vector is not None and vector[2] > 0:  # a tile as it is
            return [hit("z0", 0.8)]
        return hits(*(f"c{i}" for i in range(12)), score=top_score)

    retriever = FakeRetriever(found)
    options = SearchOptions(
        localize_queries=True, category_boost=0.0, rerank_depth=0, whole_photo_slots=0, zoom_tile_localize=localised
    )
    outcome = await SearchCore(
        ports(embedder, retriever, FakeCache(None), tracker(calibration=calibration)), options
    ).search(SearchQuery(image=b"photo"))
    ids = [h.product_id for h in outcome.hits]
    if not zoomed:
        assert ids[:2] == ["c0", "c1"] and len(embedder.regions) == 1 and len(retriever.searches) == 1
        return
    assert embedder.regions[1] == zoom_tiles(0.6)  # one call: the four corners, each 0.6 of the side
    assert embedder.localized_in_region == [[False], [localised] * 4]
    if not localised:
        assert len(retriever.searches) == 1 + 1 and ids[:2] == ["z0", "c0"]  # the four tiles in one search
        assert len(retriever.lookups[1].any_of) == 4
        return
    assert len(retriever.searches) == 1 + 1  # each tile's crop and the tile itself, all in one search
    assert len(retriever.lookups[1].any_of) == 8
    # A product only a tile found ranks by its tile score less the discount (0.9 - 0.06); one the crop
    # found keeps its crop score unless a tile beats it by more than that (c1: +0.03 is not enough).
    assert ids[:4] == ["t0", "z0", "c0", "c1"]
    assert outcome.hits[0].score == pytest.approx(0.84)
    assert outcome.hits[3].score == pytest.approx(top_score - 0.01)


@pytest.mark.parametrize(
    ("tile_side", "popout", "looks"),
    [(0.6, True, 5), (0.0, True, 1), (0.6, False, 4)],
    ids=["tiles and the conspicuous part", "the conspicuous part alone", "tiles alone"],
)
async def test_an_unconvincing_photo_is_also_searched_by_its_most_conspicuous_part(
    tile_side: float, popout: bool, looks: int
) -> None:
    calibration = ScoreCalibration(20.0, -6.0)
    conspicuous = Region(0.7, 0.1, 0.9, 0.3)
    embedder = TilingEmbedder(calibration, popout=conspicuous)
    retriever = FakeRetriever(lambda vector: hits("c0", "c1", score=0.1))
    options = SearchOptions(
        localize_queries=True,
        category_boost=0.0,
        rerank_depth=0,
        whole_photo_slots=0,
        zoom_tile_side=tile_side,
        zoom_popout=popout,
    )
    core = SearchCore(ports(embedder, retriever, FakeCache(None), tracker(calibration=calibration)), options)
    await core.search(SearchQuery(image=b"photo"))
    assert len(embedder.regions) == 2 and len(embedder.regions[1]) == looks  # one more call for all the looks
    assert (embedder.regions[1][-1] == conspicuous) is popout
    # Looked at as a localised tile is: its own vector and the product found inside it, in the one search.
    assert embedder.localized_in_region[1] == [True] * looks
    assert len(retriever.searches) == 2 and len(retriever.lookups[1].any_of) == 2 * looks


async def test_the_tiles_are_skipped_when_the_caller_names_a_region() -> None:
    calibration = ScoreCalibration(20.0, -6.0)
    embedder = TilingEmbedder(calibration)
    retriever = FakeRetriever(lambda vector: hits("c0", "c1", score=0.1))
    options = SearchOptions(localize_queries=True, category_boost=0.0, rerank_depth=0, whole_photo_slots=0)
    core = SearchCore(ports(embedder, retriever, FakeCache(None), tracker(calibration=calibration)), options)
    await core.search(SearchQuery(image=b"photo", region=Region(0.1, 0.1, 0.5, 0.5)))
    assert len(embedder.regions) == 1 and len(retriever.searches) == 1


async def test_an_embedder_failing_on_the_tiles_leaves_the_crop_answer() -> None:
    calibration = ScoreCalibration(20.0, -6.0)
    embedder = TilingEmbedder(calibration)

    def fail_after_the_first_call() -> None:
        if len(embedder.regions) > 1:
            raise Unavailable("embedder: connection refused")

    embedder.after_call = fail_after_the_first_call
    retriever = FakeRetriever(lambda vector: hits("c0", "c1", score=0.1))
    options = SearchOptions(localize_queries=True, category_boost=0.0, rerank_depth=0, whole_photo_slots=0)
    core = SearchCore(ports(embedder, retriever, FakeCache(None), tracker(calibration=calibration)), options)
    outcome = await core.search(SearchQuery(image=b"photo"))
    assert len(embedder.regions) == 2  # the tiles were asked for
    assert [h.product_id for h in outcome.hits] == ["c0", "c1"] and len(retriever.searches) == 1


async def test_probabilities_follow_the_models_own_calibration_then_the_fallback() -> None:
    models = tracker(calibration=ScoreCalibration(12.5, -6.0))
    cache = FakeCache(None)
    retriever = FakeRetriever(lambda vector: hits("p0", "p1", score=0.7))
    core = SearchCore(ports(FakeEmbedder(), retriever, cache, models), PLAIN)
    first = await core.search(SearchQuery(product_id="q"))
    assert [h.same_product_probability for h in first.hits] == [
        pytest.approx(logistic(12.5, -6.0, 0.7)),
        pytest.approx(logistic(12.5, -6.0, 0.69)),
    ]
    models.observe(MODEL, None)  # the same model, now without a fit of its own: the setting applies
    second = await core.search(SearchQuery(product_id="q"))
    assert second.hits[0].same_product_probability == pytest.approx(logistic(5.0, -1.0, 0.7))
    # Cached answers hold probabilities, so the calibration is part of the cache key.
    assert cache.fingerprints[0] != cache.fingerprints[1]


async def test_an_answer_is_cached_and_a_corrupt_cached_value_is_a_miss() -> None:
    cache = FakeCache(token="t7")
    retriever = FakeRetriever(lambda vector: hits("p0", "p1"))
    core = SearchCore(ports(FakeEmbedder(), retriever, cache, tracker()), PLAIN)
    query = SearchQuery(image=b"photo")
    assert not (await core.search(query)).cache_hit
    again = await core.search(query)
    assert again.cache_hit and [h.product_id for h in again.hits] == ["p0", "p1"] and len(retriever.searches) == 1
    [key] = cache.values
    junks = (b"\xff not json", b'{"hits": [{"nope": 1}], "prediction": null}', b"[]")
    for junk in junks:
        cache.values[key] = junk
        outcome = await core.search(query)
        assert not outcome.cache_hit and [h.product_id for h in outcome.hits] == ["p0", "p1"]
    assert cache.corrupt == len(junks)  # counted


async def test_a_rollout_is_followed_by_the_model_that_made_the_query_vector() -> None:
    models = tracker()
    rolled = ModelId(MODEL.name, "4", MODEL.dimension)
    embedder = FakeEmbedder(model=rolled, calibration=ScoreCalibration(9.0, -4.0))
    retriever = FakeRetriever(lambda vector: hits("p0"))
    cache = FakeCache()
    outcome = await SearchCore(ports(embedder, retriever, cache, models), PLAIN).search(SearchQuery(image=b"photo"))
    assert outcome.model == rolled and retriever.searches == [rolled]
    assert outcome.hits[0].same_product_probability == pytest.approx(logistic(9.0, -4.0, 0.3))
    assert models.current.id == rolled  # adopted for the requests that follow
    # The answer is stored under the model that made it, not under the key it was looked up with.
    [(_, stored)] = cache.values
    assert stored != cache.fingerprints[0]
    again = await SearchCore(ports(embedder, retriever, cache, models), PLAIN).search(SearchQuery(image=b"photo"))
    assert again.cache_hit and again.model == rolled


@pytest.mark.parametrize(
    ("fault", "error", "fragment"),
    [
        (
            ImageFault(ImageErrorReason.TOO_LARGE, "image is 12 MiB"),
            ResourceExhausted,
            "query image rejected: image is 12",
        ),
        (corrupt("truncated"), InvalidArgument, "query image rejected (CORRUPT): truncated"),
    ],
)
async def test_a_refused_query_image_is_the_callers_error(fault: ImageFault, error: type, fragment: str) -> None:
    core = SearchCore(
        ports(FakeEmbedder(lambda content, trimmed: fault), FakeRetriever(), FakeCache(), tracker()), PLAIN
    )
    with pytest.raises(error) as info:
        await core.search(SearchQuery(image=b"photo"))
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        (SearchQuery(), "set exactly one of image or product_id"),
        (SearchQuery(image=b"x", product_id="p"), "set exactly one of image or product_id"),
        (SearchQuery(image=b""), "image is empty"),
        (SearchQuery(product_id="p", region=None, top_k=101), "top_k must be between 1 and 100"),
        (SearchQuery(product_id="p", min_score=2.0), "min_score must lie in [-1, 1]"),
        (SearchQuery(product_id="p", catalog="Bad-Name"), "catalog must be 1-48 characters"),
    ],
)
async def test_bad_queries_are_refused_before_any_work(query: SearchQuery, fragment: str) -> None:
    retriever = FakeRetriever()
    with pytest.raises(InvalidArgument) as info:
        await SearchCore(ports(FakeEmbedder(), retriever, FakeCache(), tracker()), PLAIN).search(query)
    assert fragment in str(info.value) and retriever.searches == []
