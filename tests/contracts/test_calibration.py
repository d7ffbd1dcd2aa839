"""The same-product calibration: one map from score to probability, one fit, one text form."""

from __future__ import annotations

import numpy as np
import pytest

from imagesearch.contracts.calibration import FALLBACK, ScoreCalibration


def test_the_probability_is_monotone_bounded_and_matches_its_vector_form() -> None:
    scores = np.linspace(-1, 1, 41)
    values = [FALLBACK.probability(s) for s in scores]
    assert values == sorted(values) and 0 <= values[0] < 0.01 and 0.99 < values[-1] <= 1
    np.testing.assert_allclose(FALLBACK.probabilities(scores), values, rtol=1e-12)
    assert ScoreCalibration(1000.0, 0.0).probability(-1.0) == 0.0  # no overflow far out


def test_the_text_form_round_trips_and_bad_text_says_what_is_wrong() -> None:
    assert str(FALLBACK) == "32.84,-23.40" and ScoreCalibration.parse(str(FALLBACK)) == FALLBACK
    for bad, fragment in (("1", "two numbers"), ("a,b", "two numbers"), ("-3,1", "slope > 0"), ("nan,1", "finite")):
        with pytest.raises(ValueError, match=fragment):
            ScoreCalibration.parse(bad)


def test_the_fit_recovers_a_known_map_and_scores_itself() -> None:
    rng = np.random.default_rng(0)
    truth = ScoreCalibration(20.0, -12.0)
    scores = rng.uniform(0.3, 0.9, 20_000)
    labels = (rng.random(scores.size) < truth.probabilities(scores)).astype(float)
    fitted = ScoreCalibration.fit(scores, labels)
    assert fitted.slope == pytest.approx(20.0, rel=0.1) and fitted.intercept == pytest.approx(-12.0, rel=0.1)
    assert fitted.log_loss(scores, labels) <= ScoreCalibration(10.0, -6.0).log_loss(scores, labels)
    assert 0 < fitted.brier(scores, labels) < 0.25


def test_separable_examples_still_give_a_finite_fit() -> None:
    fitted = ScoreCalibration.fit(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))
    assert np.isfinite([fitted.slope, fitted.intercept]).all() and fitted.slope > 0
