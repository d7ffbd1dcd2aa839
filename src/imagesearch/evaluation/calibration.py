"""The same-product calibration: a logistic (Platt) fit of "is this hit the query's product" on its score.

Used by tools/fit_calibration.py (from an `imagesearch eval` result on real
shopper photos) and by `imagesearch adapt` (from synthetic views of the catalog).
"""
from __future__ import annotations

import numpy as np


def fit_logistic(scores: np.ndarray, labels: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Maximum-likelihood (slope, intercept), with a tiny ridge so separable data stays finite."""
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    w = np.zeros(2)
    X = np.stack([x, np.ones_like(x)], axis=1)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(X @ w)))
        gradient = X.T @ (p - y) + 1e-3 * w
        hessian = (X * (p * (1 - p))[:, None]).T @ X + 1e-3 * np.eye(2)
        w -= np.linalg.solve(hessian, gradient)
    return float(w[0]), float(w[1])


def log_loss(scores: np.ndarray, labels: np.ndarray, slope: float, intercept: float) -> float:
    p = 1 / (1 + np.exp(-(slope * np.asarray(scores) + intercept)))
    y = np.asarray(labels)
    return float(-np.mean(y * np.log(p + 1e-9) + (1 - y) * np.log(1 - p + 1e-9)))
