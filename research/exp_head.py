#!/usr/bin/env python3
"""Step 6 evaluation: projection head trained on synthetic views (split model for honest numbers + all)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, load_meta  # noqa: E402
from evaluate import metrics, score_matrix  # noqa: E402
from post import apply_pcaw, fit_pcaw  # noqa: E402
from results import record  # noqa: E402
from train_head import load_views, project, train  # noqa: E402

meta = load_meta()
pool = sys.argv[1] if len(sys.argv) > 1 else "gem"
kinds = sys.argv[2].split(",") if len(sys.argv) > 2 else ["linear"]
qsets = {
    "loc288->224(mean+.5sd,e0)": (["loc_288_meanstd0.5_0.0_224_pad"], 2.65),
}
N, n_cat = 1495, meta["n_cat"]
held = np.load(CACHE / "catalog_heldout.npy")
train_split = np.setdiff1d(np.arange(N), held)
unseen_q = np.isin(meta["q_gt"], held)
idx = np.load(CACHE / f"index_224.npz")[pool]
flipf = CACHE / "index_224_flip.npz"
idxf = np.load(flipf)[pool] if flipf.exists() else None
views, vitem = load_views(pool)
print("views", views.shape, "unseen queries", unseen_q.sum())


def qfeat(names):
    F = [np.load(CACHE / f"{n}.npz")[pool] for n in names]
    return F[0] if len(F) == 1 else np.stack(F, 1)


def run(label, proj_q, proj_i, cost, qname):
    for qn, (names, c) in qsets.items():
        if qname and qn != qname:
            continue
        q = qfeat(names)
        qp = proj_q(q.reshape(-1, q.shape[-1])).reshape(*q.shape[:-1], -1)
        s = score_matrix(qp, proj_i(idx))
        if idxf is not None and "mirror" in label:
            s = np.maximum(s, score_matrix(qp, proj_i(idxf)))
        record("6-head", f"{label} | q={qn} | all", metrics(s, meta), c)
        record("6-head", f"{label} | q={qn} | unseen half", metrics(s, meta, unseen_q), c)


# references on the same subsets
ident = lambda x: x  # noqa: E731
run(f"no head ({pool})", ident, ident, 2, None)
mu, P = fit_pcaw(idx[train_split], 512, shrink=0.1)
run(f"PCA-w512 on train split ({pool})", lambda x: apply_pcaw(x, mu, P), lambda x: apply_pcaw(x, mu, P), 2, None)
for kind in kinds:
    for tau, ep in ((0.05, 40),):
        head = train(idx, views, vitem, train_split, kind=kind, tau=tau, epochs=ep, verbose=True,
                     extra_clean=idxf)
        pr = lambda x: project(head, x)  # noqa: E731
        run(f"head {kind} 1280->512 tau={tau} ep={ep} trained on distractors+half catalog ({pool})", pr, pr, 2, None)
        head_all = train(idx, views, vitem, np.arange(N), kind=kind, tau=tau, epochs=ep, extra_clean=idxf)
        pa = lambda x: project(head_all, x)  # noqa: E731
        run(f"head {kind} 1280->512 tau={tau} ep={ep} trained on ALL index items ({pool})", pa, pa, 2, None)
        if idxf is not None:
            run(f"head {kind} (split) + mirror indexed ({pool})", pr, pr, 2, None)
