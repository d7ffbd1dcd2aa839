"""From a raw cosine score to a calibrated "same product" probability.

A logistic (Platt) fit, p = 1 / (1 + exp(-(slope * score + intercept))), with
slope > 0 so it is monotone in the score. Fitted by `tools/fit_calibration.py`
on shopper photos whose product is known (an `imagesearch eval` result);
docs/quality.md records the fit and how well it holds on held-out queries.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from imagesearch.common.config import SettingsError

# Fitted on half of the dev queries, checked on the other half (docs/quality.md), for
# model image_embedding v2 with query localisation: refit when the model changes.
DEFAULT = "30.80,-21.80"


@dataclass(frozen=True)
class Calibration:
    slope: float
    intercept: float

    def __post_init__(self) -> None:
        if not (self.slope > 0 and math.isfinite(self.slope) and math.isfinite(self.intercept)):
            raise SettingsError(f"SAME_PRODUCT_CALIBRATION needs a positive slope, got {self.slope}, {self.intercept}")

    @classmethod
    def parse(cls, text: str) -> "Calibration":
        try:
            slope, intercept = (float(part) for part in text.split(","))
        except ValueError:
            raise SettingsError(f"SAME_PRODUCT_CALIBRATION must be 'slope,intercept', got {text!r}") from None
        return cls(slope, intercept)

    def probability(self, score: float) -> float:
        z = self.slope * score + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
