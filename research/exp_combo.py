#!/usr/bin/env python3
"""Combination: final*mid localisation + index framing (normal / normal+tight) + PCA-w vs learned whitening
(views at 224; fitted on the train split for the honest unseen-half figure, and on all items)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, load_meta  # noqa: E402
from evaluate import metrics, score_matrix  # noqa: E402
from post import apply_pcaw, fit_lw, fit_pcaw  # noqa: E402
from results import record  # noqa: E402
from train_head import load_views  # noqa: E402

meta = load_meta()
N = 1495
held = np.load(CACHE / "catalog_heldout.npy")
train = np.setdiff1d(np.arange(N), held)
unseen = np.isin(meta["q_gt"], held)
V, item = load_views("gem")
idx224 = np.load(CACHE / "index_224.npz")["gem"]
own2 = np.r_[np.arange(N), np.arange(N)]
for S2, cost in ((224, 2.65), (256, 2.96)):
    c = np.load(CACHE / f"locmid_288_meanstd1.0_{S2}.npz")["gem"]
    idx = np.load(CACHE / f"index_{S2}.npz")["gem"]
    tight = np.load(CACHE / f"index_{S2}_tight_m0.0.npz")["gem"]
    for iname, I, own in (("index normal", idx, None), ("index normal+tight (max)", np.concatenate([idx, tight]), own2)):
        base = f"loc 288->{S2} final*mid e0 | {iname}"
        for wname, (mu, P), sel in (
                ("PCAw512 s0.3 (fit on index)", fit_pcaw(I, 512, shrink=0.3), None),
                ("LW512 s0.5 fit on train split", fit_lw(idx224 if S2 == 224 else idx, V, item, train, 512, 0.5), "split"),
                ("LW512 s0.5 fit on all items", fit_lw(idx224 if S2 == 224 else idx, V, item, np.arange(N), 512, 0.5), None)):
            s = score_matrix(apply_pcaw(c, mu, P), apply_pcaw(I, mu, P), own)
            record("7-combo", f"{base} | {wname} | all", metrics(s, meta), cost)
            record("7-combo", f"{base} | {wname} | unseen half", metrics(s, meta, unseen), cost)
