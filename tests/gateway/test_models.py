"""The model tracker: the gateway's one owner of which model the embedder serves, and its calibration."""

from __future__ import annotations

import pytest

from gateway.fakes import FALLBACK, MODEL
from imagesearch.common.errors import Unavailable
from imagesearch.common.types import ModelId
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch_gateway.models import ModelTracker


def test_until_the_embedder_names_its_model_calls_are_unavailable() -> None:
    with pytest.raises(Unavailable, match="the embedder has not named its model yet"):
        ModelTracker(FALLBACK).current  # noqa: B018


def test_the_models_own_calibration_wins_and_the_setting_is_the_fallback() -> None:
    models = ModelTracker(FALLBACK)
    own = models.observe(MODEL, ScoreCalibration(12.5, -6.0))
    assert (own.id, own.calibration, own.own_calibration) == (MODEL, ScoreCalibration(12.5, -6.0), True)
    rolled = models.observe(ModelId(MODEL.name, "4", 512), None)  # a version without a fit of its own
    assert (rolled.calibration, rolled.own_calibration) == (FALLBACK, False)
    assert models.current == rolled


def test_a_change_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    models = ModelTracker(FALLBACK)
    with caplog.at_level("INFO", logger="imagesearch_gateway.models"):
        for _ in range(3):
            models.observe(MODEL, None)
    assert [r.getMessage() for r in caplog.records] == [
        "gateway: serving model image_embedding v3 (4-d), same-product calibration 5.00,-1.00 "
        "(SAME_PRODUCT_CALIBRATION: the model carries none)"
    ]
