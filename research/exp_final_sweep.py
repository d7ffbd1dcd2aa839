#!/usr/bin/env python3
"""PCA-w dims/shrink, mirror index and category re-rank on the best localisation (final*mid map)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, load_meta  # noqa: E402
from evaluate import metrics, score_matrix  # noqa: E402
from post import apply_pcaw, fit_pcaw, alpha_qe  # noqa: E402
from results import record  # noqa: E402

meta = load_meta()
for S2, cost in ((256, 2.96), (224, 2.65)):
    c = np.load(CACHE / f"locmid_288_meanstd1.0_{S2}.npz")["gem"]
    idx = np.load(CACHE / f"index_{S2}.npz")["gem"]
    base = f"loc 288->{S2} map=final*mid thr=meanstd1.0 e0"
    for d, sh in ((256, 0.3), (384, 0.3), (512, 0.1), (512, 0.5), (768, 0.3), (1024, 0.3)):
        mu, P = fit_pcaw(idx, d, shrink=sh)
        record("3-5", f"{base} +PCAw{d} s{sh}", metrics(score_matrix(apply_pcaw(c, mu, P), apply_pcaw(idx, mu, P)), meta), cost)
    mu, P = fit_pcaw(idx, 512, shrink=0.3)
    qw, iw = apply_pcaw(c, mu, P), apply_pcaw(idx, mu, P)
    fl = CACHE / f"index_{S2}_flip.npz"
    if fl.exists():
        iwf = apply_pcaw(np.load(fl)["gem"], mu, P)
        record("3-5", f"{base} +PCAw512 s0.3 + catalog mirror indexed",
               metrics(score_matrix(qw, np.concatenate([iw, iwf]), np.r_[np.arange(1495), np.arange(1495)]), meta), cost)
    record("3-5", f"{base} +PCAw512 s0.3 + alpha-QE k=1", metrics(score_matrix(alpha_qe(qw, iw, 1, 3.0), iw), meta), cost)
    sw = score_matrix(qw, iw)
    ii = idx @ idx.T
    top1 = sw.argmax(1)
    for beta in (0.2, 0.5, 1.0):
        s = sw + beta * ii[top1]
        s[np.arange(len(s)), top1] = np.inf
        record("5-cat", f"{base} +PCAw512 s0.3 + {beta}*sim_raw(top1, item), top1 fixed", metrics(s, meta), cost)
