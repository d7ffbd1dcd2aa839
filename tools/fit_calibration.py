#!/usr/bin/env python3
"""Fit the gateway's "same product" probability from an `imagesearch eval` result.

    imagesearch eval ../shared/datasets/dev --out dev.json
    python tools/fit_calibration.py dev.json          # prints SAME_PRODUCT_CALIBRATION=slope,intercept

Every query's top-10 hits are examples: the ground-truth product is a positive,
every other hit a negative. A logistic regression of that on the score (two
parameters, Newton's method) is fitted on the queries of one half (by query id)
and checked on the other: the held-out log-loss, Brier score and a reliability
table (predicted vs observed rate per probability bin) are printed, so the
numbers say whether the probabilities can be trusted on photos the fit never saw.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np


def examples(queries: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = [], []
    for q in queries:
        for pid, score in q["top"]:
            scores.append(score)
            labels.append(1.0 if pid == q["product_id"] else 0.0)
    return np.asarray(scores), np.asarray(labels)


def fit_logistic(x: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Maximum-likelihood (slope, intercept), with a tiny ridge so separable data stays finite."""
    w = np.zeros(2)
    X = np.stack([x, np.ones_like(x)], axis=1)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(X @ w)))
        gradient = X.T @ (p - y) + 1e-3 * w
        hessian = (X * (p * (1 - p))[:, None]).T @ X + 1e-3 * np.eye(2)
        w -= np.linalg.solve(hessian, gradient)
    return float(w[0]), float(w[1])


def held_out(queries: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split by a hash of the query id: stable, and independent of file order."""
    def side(q: dict) -> int:
        return hashlib.sha256(q["query_id"].encode()).digest()[0] % 2
    return [q for q in queries if side(q) == 0], [q for q in queries if side(q) == 1]


def report(x: np.ndarray, y: np.ndarray, slope: float, intercept: float) -> str:
    p = 1 / (1 + np.exp(-(slope * x + intercept)))
    eps = 1e-9
    log_loss = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))
    lines = [f"  log-loss {log_loss:.4f}   Brier {np.mean((p - y) ** 2):.4f}   examples {len(y)} ({int(y.sum())} positive)",
             "  predicted   observed   n"]
    edges = [0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0001]
    for lo, hi in zip(edges, edges[1:]):
        inside = (p >= lo) & (p < hi)
        if inside.any():
            lines.append(f"  {lo:.1f}-{min(hi, 1):.1f}     {y[inside].mean():8.3f}   {int(inside.sum())}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result", type=Path, help="JSON written by `imagesearch eval --out`")
    args = parser.parse_args()
    queries = json.loads(args.result.read_text())["queries"]
    if not queries or "top" not in queries[0] or not isinstance(queries[0]["top"][0], list):
        print("error: the result has no per-hit scores; re-run `imagesearch eval`", file=sys.stderr)
        return 1
    fit_half, check_half = held_out(queries)
    slope, intercept = fit_logistic(*examples(fit_half))
    print(f"fitted on {len(fit_half)} queries: slope {slope:.3f}, intercept {intercept:.3f}")
    print(f"held-out ({len(check_half)} queries):")
    print(report(*examples(check_half), slope, intercept))
    print(f"\nSAME_PRODUCT_CALIBRATION={slope:.2f},{intercept:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
