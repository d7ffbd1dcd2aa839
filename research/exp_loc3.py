#!/usr/bin/env python3
"""Step 2/3: 288 first pass -> 256 crop (2.96 evals); free extras: the 288 full-pad embedding, query mirror."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, load_meta, l2n  # noqa: E402
from evaluate import metrics, score_matrix  # noqa: E402
from loc import crop_feats  # noqa: E402
from post import apply_pcaw, fit_pcaw  # noqa: E402
from results import evals, record  # noqa: E402

meta = load_meta()
pool = "gem"
full288 = np.load(CACHE / "q_288_pad.npz")
for S2 in (256, 224):
    idx = np.load(CACHE / f"index_{S2}.npz")[pool]
    mu, P = fit_pcaw(idx, 512, shrink=0.1)
    W = lambda x: apply_pcaw(x, mu, P)  # noqa: E731
    c = crop_feats(meta, full288["maps"], 288, "meanstd0.5", 0.0, S2, "pad")[pool]
    name = f"loc 288->{S2} thr=meanstd0.5 expand=0 pad gem"
    cost = evals(288, S2)
    if S2 == 256:
        record("2-loc", name + " [crop only]", metrics(score_matrix(c, idx), meta), cost)
        record("2-loc", name + " [crop only] +PCAw512", metrics(score_matrix(W(c), W(idx)), meta), cost)
    # the 288 first pass' own embedding is free; index at S2 (GeM is fairly size-robust)
    both = np.stack([full288[pool], c], 1)
    record("2-multi", name + " max[full-pad288, crop] +PCAw512",
           metrics(score_matrix(W(both.reshape(-1, 1280)).reshape(299, 2, -1), W(idx)), meta), cost)
    for d in (256, 384, 768):
        mu2, P2 = fit_pcaw(idx, d, shrink=0.1)
        record("3-5", name + f" [crop only] +PCAw{d}",
               metrics(score_matrix(apply_pcaw(c, mu2, P2), apply_pcaw(idx, mu2, P2)), meta), cost)
    for sh in (0.03, 0.3):
        mu2, P2 = fit_pcaw(idx, 512, shrink=sh)
        record("3-5", name + f" [crop only] +PCAw512 shrink={sh}",
               metrics(score_matrix(apply_pcaw(c, mu2, P2), apply_pcaw(idx, mu2, P2)), meta), cost)
    fl = CACHE / f"index_{S2}_flip.npz"
    if fl.exists():
        idxf = np.load(fl)[pool]
        both_i = np.concatenate([idx, idxf])
        owner = np.r_[np.arange(1495), np.arange(1495)]
        record("3-5", name + " [crop only] +PCAw512 + catalog mirror indexed",
               metrics(score_matrix(W(c), W(both_i), owner), meta), cost)
        mu3, P3 = fit_pcaw(both_i, 512, shrink=0.1)
        record("3-5", name + " [crop only] +PCAw512(fit on orig+mirror) + catalog mirror indexed",
               metrics(score_matrix(apply_pcaw(c, mu3, P3), apply_pcaw(both_i, mu3, P3), owner), meta), cost)
