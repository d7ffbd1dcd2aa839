"""The predicted category is a score-weighted vote of the nearest products."""
from __future__ import annotations

import pytest

from imagesearch.common.types import Hit
from imagesearch_gateway.category import predict_category


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


def test_the_same_product_probability_is_monotone_and_bounded() -> None:
    from imagesearch.common.config import SettingsError
    from imagesearch_gateway.calibration import DEFAULT, Calibration

    calibration = Calibration.parse(DEFAULT)
    values = [calibration.probability(s / 20) for s in range(-20, 21)]
    assert values == sorted(values) and 0 <= values[0] < 0.01 and 0.99 < values[-1] <= 1
    for bad in ("1", "a,b", "-3,1"):
        with pytest.raises(SettingsError):
            Calibration.parse(bad)
