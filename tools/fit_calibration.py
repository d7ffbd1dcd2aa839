#!/usr/bin/env python3
"""Fit a model version's "same product" probability from an `imagesearch eval` result.

    imagesearch eval ../shared/datasets/dev --out dev.json
    python tools/fit_calibration.py dev.json                        # fit and report (version 2)
    python tools/fit_calibration.py dev.json --version 3            # ... for the version the eval ran against
    python tools/fit_calibration.py dev.json --write model_repo     # ... and store it in that repository's configs

The fit belongs to the version: `--write` stores it as the version's config parameter in every
config of the model (config.pbtxt and configs/*.pbtxt, through imagesearch.contracts.model, their
one writer); the embedder reports it and the gateway uses it. Without `--write` it prints the
SAME_PRODUCT_CALIBRATION value, the gateway's fallback for a version whose config carries none.

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
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from imagesearch.contracts import model as contract
from imagesearch.contracts.calibration import ScoreCalibration


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


def report(x: np.ndarray, y: np.ndarray, calibration: ScoreCalibration) -> str:
    p = calibration.probabilities(x)
    lines = [
        f"  log-loss {calibration.log_loss(x, y):.4f}   Brier {calibration.brier(x, y):.4f}   "
        f"examples {len(y)} ({int(y.sum())} positive)",
        "  predicted   observed   n",
    ]
    edges = [0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0001]
    for lo, hi in itertools.pairwise(edges):
        inside = (p >= lo) & (p < hi)
        if inside.any():
            lines.append(f"  {lo:.1f}-{min(hi, 1):.1f}     {y[inside].mean():8.3f}   {int(inside.sum())}")
    return "\n".join(lines)


def write(repository: Path, version: str, calibration: ScoreCalibration) -> list[Path]:
    """Store the fit as `version`'s parameter in every config of the model in `repository`."""
    paths = contract.config_paths(contract.model_dir(repository))
    for path in paths:
        config = contract.ConfigFile.read(path)
        config.set_calibration(version, calibration)
        config.write()
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result", type=Path, help="JSON written by `imagesearch eval --out`")
    parser.add_argument(
        "--version",
        default=contract.BASE_VERSION,
        help=f"model version the eval ran against (default: {contract.BASE_VERSION})",
    )
    parser.add_argument(
        "--write", type=Path, metavar="MODEL_REPO", help="store the fit in this Triton model repository's configs"
    )
    args = parser.parse_args()
    queries = json.loads(args.result.read_text())["queries"]
    if not queries or "top" not in queries[0] or not isinstance(queries[0]["top"][0], list):
        print("error: the result has no per-hit scores; re-run `imagesearch eval`", file=sys.stderr)
        return 1
    fit_half, check_half = held_out(queries)
    calibration = ScoreCalibration.fit(*examples(fit_half))
    print(f"fitted on {len(fit_half)} queries: slope {calibration.slope:.3f}, intercept {calibration.intercept:.3f}")
    print(f"held-out ({len(check_half)} queries):")
    print(report(*examples(check_half), calibration))
    if args.write is not None:
        for path in write(args.write, args.version, calibration):
            print(f"wrote {contract.calibration_key(args.version)} = {calibration} to {path}")
    else:
        print(f"\nstore it with --write model_repo (as {contract.calibration_key(args.version)}), or set the fallback:")
        print(f"SAME_PRODUCT_CALIBRATION={calibration}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
