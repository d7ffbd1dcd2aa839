#!/usr/bin/env python3
"""Steps 3-5 on cached features: catalog flip TTA, PCA-whitening, alpha-QE / DBA."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, l2n, load_meta  # noqa: E402
from evaluate import metrics, score_matrix  # noqa: E402
from post import alpha_qe, apply_pcaw, dba, fit_pcaw  # noqa: E402
from results import evals, record  # noqa: E402

meta = load_meta()
N = 1495
pool = "gem"
S = int(sys.argv[1]) if len(sys.argv) > 1 else 224
qname = sys.argv[2] if len(sys.argv) > 2 else "loc_224_meanstd0.5_0.15_224_pad"
cost = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
tag = f"[{qname} {pool}]"
q = np.load(CACHE / f"{qname}.npz")[pool]
idx = np.load(CACHE / f"index_{S}.npz")[pool]
owner1 = None
record("3-5", f"{tag} plain", metrics(score_matrix(q, idx), meta), cost)
flip = CACHE / f"index_{S}_flip.npz"
if flip.exists():
    idxf = np.load(flip)[pool]
    both = np.concatenate([idx, idxf])
    owner = np.r_[np.arange(N), np.arange(N)]
    record("3-5", f"{tag} + catalog mirror indexed (max per item)", metrics(score_matrix(q, both, owner), meta), cost)
    record("3-5", f"{tag} + catalog mean(orig, mirror) emb", metrics(score_matrix(q, l2n(idx + idxf)), meta), cost)
for dim in (128, 256, 512, None):
    for shrink in (0.0, 0.1):
        mu, P = fit_pcaw(idx, dim, shrink=shrink)
        m = metrics(score_matrix(apply_pcaw(q, mu, P), apply_pcaw(idx, mu, P)), meta)
        record("3-5", f"{tag} PCA-w d={dim or 1280} shrink={shrink}", m, cost)
for k, a in ((1, 3.0), (2, 3.0), (3, 3.0), (5, 3.0)):
    record("3-5", f"{tag} alpha-QE k={k} a={a}", metrics(score_matrix(alpha_qe(q, idx, k, a), idx), meta), cost)
for k in (1, 2):
    record("3-5", f"{tag} DBA k={k}", metrics(score_matrix(q, dba(idx, k)), meta), cost)
