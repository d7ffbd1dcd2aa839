"""Ranking: the predicted category is a score-weighted vote of the nearest products and ranks the
rest; an unconvincing localised query gives the last places of page one to the whole photo."""

from __future__ import annotations

import pytest

from gateway.fakes import hit, hits
from imagesearch.common.types import Region
from imagesearch_gateway.ranking import (
    CategoryPrediction,
    fuse_with_tiles,
    hedge_with_whole_photo,
    predict_category,
    rerank_by_category,
    zoom_tiles,
)

LAMPS = CategoryPrediction("lamps", 0.6)


def test_the_heaviest_category_wins_with_its_share_of_the_vote() -> None:
    prediction = predict_category(
        [hit("p", 0.9, "shoes"), hit("p", 0.5, "bags"), hit("p", 0.45, "bags"), hit("p", 0.15, "shoes")]
    )
    assert prediction is not None
    assert prediction.category == "shoes"
    assert prediction.confidence == pytest.approx(1.05 / 2.0)


def test_only_the_ten_nearest_vote_and_empty_catalogs_predict_nothing() -> None:
    prediction = predict_category([hit("p", 0.5, "a")] * 10 + [hit("p", 0.9, "b")] * 20)
    assert prediction is not None and prediction.category == "a"
    assert predict_category([]) is None
    assert predict_category([hit("p", 0.9, "")]) is None


def test_the_best_match_stays_first_and_the_predicted_category_comes_next() -> None:
    candidates = [
        hit("teapot", 0.9, "teapots"),
        hit("ball", 0.8, "toys"),
        hit("lamp1", 0.75, "lamps"),
        hit("vase", 0.7, "decor"),
        hit("lamp2", 0.5, "lamps"),
    ]
    ranked = [h.product_id for h in rerank_by_category(candidates, LAMPS, boost=1.0)]
    assert ranked == ["teapot", "lamp1", "lamp2", "ball", "vase"]
    scores = sorted(h.score for h in rerank_by_category(candidates, LAMPS, 0.5))
    assert scores == sorted(h.score for h in candidates)  # only the order changes


def test_the_lift_is_relative_to_the_query_own_score_spread() -> None:
    # The same ranking at any score scale: a whitened model's scores are ~4x smaller.
    for scale in (1.0, 0.25):
        candidates = [
            hit("a", 0.9 * scale, "x"),
            hit("b", 0.8 * scale, "y"),
            hit("c", 0.7 * scale, "lamps"),
            hit("d", 0.1 * scale, "y"),
        ]
        assert [h.product_id for h in rerank_by_category(candidates, LAMPS, boost=0.2)] == ["a", "c", "b", "d"]
        assert [h.product_id for h in rerank_by_category(candidates, LAMPS, boost=0.05)] == ["a", "b", "c", "d"]


def test_no_boost_no_prediction_or_flat_scores_keep_score_order() -> None:
    candidates = [hit("a", 0.9, "x"), hit("b", 0.8, "y"), hit("c", 0.7, "lamps")]
    assert rerank_by_category(candidates, LAMPS, boost=0.0) == candidates
    assert rerank_by_category(candidates, None, boost=0.5) == candidates
    flat = [hit(p, 0.5, c) for p, c in (("a", "x"), ("b", "y"), ("c", "lamps"))]
    assert rerank_by_category(flat, LAMPS, boost=0.5) == flat


CROP = hits(*(f"c{i}" for i in range(20)))


def test_the_whole_photo_takes_the_last_places_of_the_first_page_and_never_the_first() -> None:
    out = hedge_with_whole_photo(CROP, hits("w0", "c1", "w1", "w2"), slots=2, top_k=100)
    assert [h.product_id for h in out[:10]] == [f"c{i}" for i in range(8)] + ["w0", "w1"]
    assert [h.product_id for h in out[10:12]] == ["c8", "c9"]  # pushed down, not dropped
    assert len(out) == len(CROP) + 2


def test_products_already_listed_are_not_repeated() -> None:
    out = hedge_with_whole_photo(CROP, hits("c0", "c9", "w0"), slots=2, top_k=10)
    ids = [h.product_id for h in out]
    assert ids[:10] == [f"c{i}" for i in range(8)] + ["c9", "w0"] and len(ids) == len(set(ids))


@pytest.mark.parametrize(("slots", "top_k"), [(0, 10), (2, 2), (2, 1)])
def test_no_room_beside_the_first_hit_or_no_slots_changes_nothing(slots: int, top_k: int) -> None:
    assert hedge_with_whole_photo(CROP, hits("w0"), slots=slots, top_k=top_k) == CROP


def test_the_zoom_tiles_are_the_four_corners_and_cover_the_photo() -> None:
    tiles = zoom_tiles(0.6)
    assert tiles[0] == Region(0.0, 0.0, 0.6, 0.6)
    assert tiles[3] == Region(pytest.approx(0.4), pytest.approx(0.4), 1.0, 1.0)
    assert {(t.x_min == 0.0, t.y_min == 0.0) for t in tiles} == {
        (True, True),
        (False, True),
        (True, False),
        (False, False),
    }
    for tile in tiles:
        tile.validate()
        assert tile.x_max - tile.x_min == pytest.approx(0.6) and tile.y_max - tile.y_min == pytest.approx(0.6)


def test_a_product_scores_its_best_of_crop_and_discounted_tiles() -> None:
    crop = [hit("a", 0.50), hit("b", 0.40), hit("c", 0.30)]
    tiles = [hit("d", 0.54), hit("c", 0.47), hit("b", 0.44)]
    fused = fuse_with_tiles(crop, tiles, discount=0.05)
    # d: only a tile found it (0.54 - 0.05); c: its tile beats its crop; b: its tile does not (0.39 < 0.40).
    assert [(h.product_id, round(h.score, 3)) for h in fused] == [("a", 0.5), ("d", 0.49), ("c", 0.42), ("b", 0.4)]
    assert fuse_with_tiles(crop, [], discount=0.05) == crop
