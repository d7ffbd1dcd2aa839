#!/usr/bin/env python3
"""Step 2b: several query crops within the 3-evaluation budget (numpy on cached crops)."""
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, l2n, load_meta  # noqa: E402
from evaluate import metrics, score_matrix  # noqa: E402
from post import apply_pcaw, fit_pcaw  # noqa: E402
from results import record  # noqa: E402

meta = load_meta()
pool = "gem"
S = 224
idx = np.load(CACHE / f"index_{S}.npz")[pool]
crops = {
    "full-crop": ("q_224_crop", 1.0), "full-pad": ("q_224_pad", 1.0),
    "loc(mean,e0)": ("loc_224_mean_0.0_224_pad", 1.0), "loc(mean+.5sd,e.15)": ("loc_224_meanstd0.5_0.15_224_pad", 1.0),
    "loc(0.5max,e.15)": ("loc_224_0.5_0.15_224_pad", 1.0), "loc(mean,e.15,square)": ("loc_224_mean_0.15_224_square", 1.0),
}
F = {k: np.load(CACHE / f"{v[0]}.npz")[pool] for k, v in crops.items()}
mu, P = fit_pcaw(idx, 512, shrink=0.1)
for a, b in combinations(crops, 2):
    if "full-pad" not in (a, b) and not (a.startswith("loc") and b.startswith("loc")):
        # full-pad is the localisation pass (free); anything else costs one more evaluation
        cost = 3.0
    else:
        cost = 2.0
    if a.startswith("loc") and b.startswith("loc"):
        cost = 3.0
    q = np.stack([F[a], F[b]], 1)
    record("2-multi", f"max[{a}, {b}]", metrics(score_matrix(q, idx), meta), cost)
    record("2-multi", f"mean-emb[{a}, {b}]", metrics(score_matrix(l2n(F[a] + F[b]), idx), meta), cost)
    qw = apply_pcaw(q.reshape(-1, q.shape[-1]), mu, P).reshape(q.shape[0], 2, -1)
    record("2-multi", f"max[{a}, {b}] +PCAw512", metrics(score_matrix(qw, apply_pcaw(idx, mu, P)), meta), cost)
