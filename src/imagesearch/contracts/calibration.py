"""From a cosine score to a calibrated "same product" probability, and how that map is fitted.

A logistic (Platt) fit, p = 1 / (1 + exp(-(slope * score + intercept))), with slope > 0 so
that it is monotone in the score. Each model version has its own score scale (a whitened
version's differs entirely), so a fit belongs to one version: the Triton config carries it per
version (`imagesearch.contracts.model.calibration_key`), the embedder reports the served
version's, and the gateway applies it. `FALLBACK` is used only for a version that carries none.

Fitted on shopper photos whose product is known (`tools/fit_calibration.py`, on an `imagesearch
eval` result) or on synthetic views of the catalog (`imagesearch adapt`); docs/quality.md records
the fits and how well they hold on held-out queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

# The same fit, run again on another machine, lands up to a few hundredths of a logit away
# (floating-point rounding in the synthetic views' pixels and the fit; 20.67 / 20.68 / 20.71 for
# the generic whitening on three VMs). A config already carrying a calibration that close keeps
# it: the difference is far below the fit's own sampling error, and rewriting tracked configs for
# it would leave every fresh checkout modified (`ConfigFile.set_calibration`).
REFIT_NOISE_LOGITS = 0.1


@dataclass(frozen=True)
class ScoreCalibration:
    """The logistic map of one model version's scores; travels beside its ModelId, never inside it
    (ModelId keys collections and caches, and a refit is not another model)."""

    slope: float
    intercept: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.slope) and self.slope > 0 and math.isfinite(self.intercept)):
            raise ValueError(
                f"needs a finite slope > 0 and a finite intercept, got slope {self.slope}, intercept {self.intercept}"
            )

    @classmethod
    def parse(cls, text: str) -> ScoreCalibration:
        """'slope,intercept', e.g. '32.84,-23.40'; a ValueError says what is wrong."""
        try:
            slope, intercept = (float(part) for part in text.split(","))
        except ValueError:
            raise ValueError(f"must be 'slope,intercept' (two numbers), got {text!r}") from None
        return cls(slope, intercept)

    def __str__(self) -> str:
        """The form `parse` reads, rounded as the configs store it."""
        return f"{self.slope:.2f},{self.intercept:.2f}"

    def agrees_with(self, other: ScoreCalibration, logits: float = REFIT_NOISE_LOGITS) -> bool:
        """Whether the two maps differ by at most `logits` of same-product odds at every score in
        [0, 1] (a line's largest gap on an interval is at one of its ends)."""
        gap_at_zero = self.intercept - other.intercept
        gap_at_one = gap_at_zero + self.slope - other.slope
        return max(abs(gap_at_zero), abs(gap_at_one)) <= logits

    def probability(self, score: float) -> float:
        z = self.slope * score + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def probabilities(self, scores: ArrayLike) -> NDArray[np.float64]:
        return np.asarray(1.0 / (1.0 + np.exp(-(self.slope * np.asarray(scores, dtype=np.float64) + self.intercept))))

    @classmethod
    def fit(cls, scores: ArrayLike, labels: ArrayLike, iterations: int = 50) -> ScoreCalibration:
        """Maximum-likelihood fit of labels (1 = the hit is the query's product) on scores.

        Newton's method on the two parameters, with a tiny ridge so separable data stays finite.
        """
        x = np.asarray(scores, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        w = np.zeros(2)
        design = np.stack([x, np.ones_like(x)], axis=1)
        for _ in range(iterations):
            p = 1 / (1 + np.exp(-(design @ w)))
            gradient = design.T @ (p - y) + 1e-3 * w
            hessian = (design * (p * (1 - p))[:, None]).T @ design + 1e-3 * np.eye(2)
            w -= np.linalg.solve(hessian, gradient)
        return cls(float(w[0]), float(w[1]))

    def log_loss(self, scores: ArrayLike, labels: ArrayLike) -> float:
        p = self.probabilities(scores)
        y = np.asarray(labels, dtype=np.float64)
        return float(-np.mean(y * np.log(p + 1e-9) + (1 - y) * np.log(1 - p + 1e-9)))

    def brier(self, scores: ArrayLike, labels: ArrayLike) -> float:
        return float(np.mean((self.probabilities(scores) - np.asarray(labels, dtype=np.float64)) ** 2))


# Fitted on half of the dev queries, checked on the other half (docs/quality.md), for model
# image_embedding version 2 with query localisation; the fallback for a version that carries none.
FALLBACK = ScoreCalibration(32.84, -23.40)
