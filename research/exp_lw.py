#!/usr/bin/env python3
"""Learned whitening (Radenovic et al.): whiten by the intra-item covariance of (synthetic view - clean shot)
differences, then PCA of the whitened index; no gradient training. Honest split: fit on distractors +
half of the catalog, evaluate separately on queries of the unseen half. Query features: 288->224 final*mid
localised crops (the views were embedded at 224)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, l2n, load_meta  # noqa: E402
from evaluate import metrics, score_matrix  # noqa: E402
from post import apply_pcaw, fit_pcaw  # noqa: E402
from results import record  # noqa: E402
from train_head import load_views  # noqa: E402

meta = load_meta()
N = 1495
held = np.load(CACHE / "catalog_heldout.npy")
train = np.setdiff1d(np.arange(N), held)
unseen = np.isin(meta["q_gt"], held)
idx = np.load(CACHE / "index_224.npz")["gem"]
c = np.load(CACHE / "locmid_288_meanstd1.0_224.npz")["gem"]
V, item = load_views("gem")


def fit_lw(items, dim=512, shrink_s=0.1, shrink_p=0.3):
    keep = np.isin(item, items)
    D = V[keep] - idx[item[keep]]
    Cs = np.cov(D.T) + 0  # intra-item covariance
    ev, U = np.linalg.eigh(Cs)
    ev = np.maximum(ev, 0) + shrink_s * ev.mean()
    P1 = U / np.sqrt(ev)
    mu = idx[items].mean(0)
    Y = (idx[items] - mu) @ P1
    ev2, U2 = np.linalg.eigh(np.cov(Y.T))
    ev2, U2 = ev2[::-1][:dim], U2[:, ::-1][:, :dim]
    P = P1 @ U2 / np.power(ev2 + shrink_p * ev2.mean(), 0.5 * 0)  # rotation only after intra-whitening
    return mu.astype(np.float32), P.astype(np.float32)


base = "loc 288->224 final*mid e0"
mu, P = fit_pcaw(idx[train], 512, shrink=0.3)
s = score_matrix(apply_pcaw(c, mu, P), apply_pcaw(idx, mu, P))
record("6-lw", f"{base} +PCAw512 s0.3 fit on train split | all", metrics(s, meta), 2.65)
record("6-lw", f"{base} +PCAw512 s0.3 fit on train split | unseen half", metrics(s, meta, unseen), 2.65)
for dim, ss in ((512, 0.1), (512, 0.5), (256, 0.1), (768, 0.1)):
    mu, P = fit_lw(train, dim, ss)
    s = score_matrix(apply_pcaw(c, mu, P), apply_pcaw(idx, mu, P))
    record("6-lw", f"{base} +learned whitening d={dim} intra-shrink={ss} fit on train split | all", metrics(s, meta), 2.65)
    record("6-lw", f"{base} +learned whitening d={dim} intra-shrink={ss} fit on train split | unseen half",
           metrics(s, meta, unseen), 2.65)
