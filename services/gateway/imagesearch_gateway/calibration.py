"""From a raw cosine score to a calibrated "same product" probability.

A logistic (Platt) fit, p = 1 / (1 + exp(-(slope * score + intercept))), with
slope > 0 so it is monotone in the score (`imagesearch.common.types.ScoreCalibration`).
Fitted by `tools/fit_calibration.py` on shopper photos whose product is known (an
`imagesearch eval` result); docs/quality.md records the fit and how well it holds
on held-out queries.

A fit belongs to one model version, so it travels with it: the Triton config holds
`same_product_calibration_v<version>` per version, the embedder reports the served
version's in ModelInfo, and the gateway uses that. The SAME_PRODUCT_CALIBRATION
setting (this module's `Calibration`) is only the fallback for a model that carries none.
"""
from __future__ import annotations

from imagesearch.common.config import SettingsError
from imagesearch.common.types import ScoreCalibration

# Fitted on half of the dev queries, checked on the other half (docs/quality.md), for
# model image_embedding v2 with query localisation: refit when the model changes.
DEFAULT = "32.84,-23.40"


class Calibration(ScoreCalibration):
    """The SAME_PRODUCT_CALIBRATION setting: a ScoreCalibration whose errors name the variable."""

    @classmethod
    def parse(cls, text: str) -> "Calibration":
        try:
            return super().parse(text)  # type: ignore[return-value]  # cls(...) builds a Calibration
        except ValueError as err:
            raise SettingsError(f"SAME_PRODUCT_CALIBRATION {err}") from None
