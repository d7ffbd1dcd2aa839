"""The predicted category is a score-weighted vote of the nearest products, and ranks the rest."""

from __future__ import annotations

import pytest

from imagesearch.common.types import Hit
from imagesearch_gateway.category import CategoryPrediction, predict_category, rerank_by_category


def hit(category: str, score: float) -> Hit:
    return Hit("p", score, "", category, "", 0.0, "")


def test_the_heaviest_category_wins_with_its_share_of_the_vote() -> None:
    prediction = predict_category([hit("shoes", 0.9), hit("bags", 0.5), hit("bags", 0.45), hit("shoes", 0.15)])
    assert prediction is not None
    assert prediction.category == "shoes"
    assert prediction.confidence == pytest.approx(1.05 / 2.0)


def test_only_the_ten_nearest_vote_and_empty_catalogs_predict_nothing() -> None:
    assert predict_category([hit("a", 0.5)] * 10 + [hit("b", 0.9)] * 20).category == "a"
    assert predict_category([]) is None
    assert predict_category([hit("", 0.9)]) is None


def named(pid: str, category: str, score: float) -> Hit:
    return Hit(pid, score, "", category, "", 0.0, "")


LAMPS = CategoryPrediction("lamps", 0.6)


def test_the_best_match_stays_first_and_the_predicted_category_comes_next() -> None:
    hits = [
        named("teapot", "teapots", 0.9),
        named("ball", "toys", 0.8),
        named("lamp1", "lamps", 0.75),
        named("vase", "decor", 0.7),
        named("lamp2", "lamps", 0.5),
    ]
    ranked = [h.product_id for h in rerank_by_category(hits, LAMPS, boost=1.0)]
    assert ranked == ["teapot", "lamp1", "lamp2", "ball", "vase"]
    assert sorted(h.score for h in rerank_by_category(hits, LAMPS, 0.5)) == sorted(h.score for h in hits)  # untouched


def test_the_lift_is_relative_to_the_query_own_score_spread() -> None:
    # The same ranking at any score scale: a whitened model's scores are ~4x smaller.
    for scale in (1.0, 0.25):
        hits = [
            named("a", "x", 0.9 * scale),
            named("b", "y", 0.8 * scale),
            named("c", "lamps", 0.7 * scale),
            named("d", "y", 0.1 * scale),
        ]
        assert [h.product_id for h in rerank_by_category(hits, LAMPS, boost=0.2)] == ["a", "c", "b", "d"]
        assert [h.product_id for h in rerank_by_category(hits, LAMPS, boost=0.05)] == ["a", "b", "c", "d"]


def test_no_boost_no_prediction_or_flat_scores_keep_score_order() -> None:
    hits = [named("a", "x", 0.9), named("b", "y", 0.8), named("c", "lamps", 0.7)]
    assert rerank_by_category(hits, LAMPS, boost=0.0) == hits
    assert rerank_by_category(hits, None, boost=0.5) == hits
    flat = [named(p, c, 0.5) for p, c in (("a", "x"), ("b", "y"), ("c", "lamps"))]
    assert rerank_by_category(flat, LAMPS, boost=0.5) == flat


def test_the_same_product_probability_is_monotone_and_bounded() -> None:
    from imagesearch.common.config import SettingsError
    from imagesearch.contracts.calibration import FALLBACK
    from imagesearch_gateway.settings import GatewaySettings

    calibration = FALLBACK
    values = [calibration.probability(s / 20) for s in range(-20, 21)]
    assert values == sorted(values) and 0 <= values[0] < 0.01 and 0.99 < values[-1] <= 1
    for bad in ("1", "a,b", "-3,1"):
        with pytest.raises(SettingsError, match="SAME_PRODUCT_CALIBRATION"):
            GatewaySettings.from_env({"SAME_PRODUCT_CALIBRATION": bad})
