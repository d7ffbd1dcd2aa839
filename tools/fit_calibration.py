#!/usr/bin/env python3
"""Fit the gateway's "same product" probability from an `imagesearch eval` result.

    imagesearch eval ../shared/datasets/dev --out dev.json
    python tools/fit_calibration.py dev.json               # the fit for the served version (default 2)
    python tools/fit_calibration.py dev.json --version 3   # ... for the version the eval ran against

It prints the model config parameter that carries the fit with its version (paste it into
model_repo/image_embedding/config.pbtxt and configs/tensorrt.pbtxt; the embedder reports it and
the gateway uses it), and the SAME_PRODUCT_CALIBRATION line, the gateway's fallback for a
version whose config carries none.

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

from imagesearch.evaluation.calibration import fit_logistic


def examples(queries: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = [], []
    for q in queries:
        for pid, score in q["top"][:10]:
            scores.append(score)
            labels.append(1.0 if pid == q["product_id"] else 0.0)
    return np.asarray(scores), np.asarray(labels)


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


def config_parameter(version: str, slope: float, intercept: float) -> str:
    """The Triton config entry the embedder reads for `version` (key same_product_calibration_v<version>)."""
    return (f'parameters {{ key: "same_product_calibration_v{version}" '
            f'value: {{ string_value: "{slope:.2f},{intercept:.2f}" }} }}')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result", type=Path, help="JSON written by `imagesearch eval --out`")
    parser.add_argument("--version", default="2",
                        help="model version the eval ran against: names the config parameter (default: 2)")
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
    print(f"\n# model_repo/image_embedding/config.pbtxt and configs/tensorrt.pbtxt (version {args.version}'s own fit):")
    print(config_parameter(args.version, slope, intercept))
    print("\n# or the gateway's fallback, for versions whose config carries none:")
    print(f"SAME_PRODUCT_CALIBRATION={slope:.2f},{intercept:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
