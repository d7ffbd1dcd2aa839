#!/usr/bin/env python3
"""Step 1: pooling (avg / GeM p=3 / max) x input size (224/256/288) x query resize mode (pad/crop/squash).

Catalog and distractor images are square, so pad == crop == squash on the index side (identical pixels);
the index is always embedded at the same size and pooling as the queries unless stated otherwise.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, load_meta, cached  # noqa: E402
from evaluate import metrics, score_matrix  # noqa: E402
from results import evals, record  # noqa: E402
import numpy as np  # noqa: E402

meta = load_meta()


def load(name):
    z = np.load(CACHE / f"{name}.npz")
    return z


for size in (224, 256, 288):
    if not (CACHE / f"index_{size}.npz").exists():
        continue
    idx = load(f"index_{size}")
    for mode in ("crop", "pad", "squash"):
        if not (CACHE / f"q_{size}_{mode}.npz").exists():
            continue
        q = load(f"q_{size}_{mode}")
        for pool in ("avg", "gem", "max"):
            m = metrics(score_matrix(q[pool], idx[pool]), meta)
            record("1-basic", f"{size}px q-{mode} {pool}", m, evals(size))
