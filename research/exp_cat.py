#!/usr/bin/env python3
"""Step 5b: re-rank ranks 2..N for category consistency without touching rank 1.

score'(j) = s_w(q, j) + beta * sim_raw(top1, j) for j != top1 (top1 stays first), where s_w is the
whitened query score and sim_raw the un-whitened GeM cosine between index items (item-item, can be
precomputed at index time). Also: s_w + lam * s_raw (blend of whitened and raw query scores).
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, load_meta  # noqa: E402
from evaluate import metrics, score_matrix  # noqa: E402
from post import apply_pcaw, fit_pcaw  # noqa: E402
from results import record  # noqa: E402

meta = load_meta()
pool = "gem"
S2 = int(sys.argv[1]) if len(sys.argv) > 1 else 256
idx = np.load(CACHE / f"index_{S2}.npz")[pool]
c = np.load(CACHE / f"loc_288_meanstd0.5_0.0_{S2}_pad.npz")[pool]
cost = round(1.65 + (S2 / 224) ** 2, 2)
mu, P = fit_pcaw(idx, 512, shrink=0.3)
sw = score_matrix(apply_pcaw(c, mu, P), apply_pcaw(idx, mu, P))
sr = score_matrix(c, idx)
base = f"loc 288->{S2} +PCAw512 shrink=0.3"
for lam in (0.5, 1.0):
    record("5-cat", f"{base} + {lam}*raw score", metrics(sw + lam * sr, meta), cost)
ii = idx @ idx.T
top1 = sw.argmax(1)
for beta in (0.1, 0.2, 0.3, 0.5, 1.0):
    s = sw + beta * ii[top1]
    s[np.arange(len(s)), top1] = np.inf  # rank 1 unchanged
    record("5-cat", f"{base} + {beta}*sim_raw(top1, item), top1 fixed", metrics(s, meta), cost)
iw = apply_pcaw(idx, mu, P)
iiw = iw @ iw.T
for beta in (0.3, 1.0):
    s = sw + beta * iiw[top1]
    s[np.arange(len(s)), top1] = np.inf
    record("5-cat", f"{base} + {beta}*sim_whitened(top1, item), top1 fixed", metrics(s, meta), cost)
