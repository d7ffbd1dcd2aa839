#!/usr/bin/env python3
"""Step 2: localisation from the first pass's feature map, then re-embed the crop (query side)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, load_meta, l2n  # noqa: E402
from evaluate import metrics, score_matrix  # noqa: E402
from loc import crop_feats  # noqa: E402
from results import evals, record  # noqa: E402

meta = load_meta()
pool = sys.argv[1] if len(sys.argv) > 1 else "gem"
S1 = int(sys.argv[2]) if len(sys.argv) > 2 else 224
S2 = int(sys.argv[3]) if len(sys.argv) > 3 else 224
variants = [("mean", 0.15, "pad"), ("mean", 0.15, "square"), ("mean", 0.0, "pad"), ("mean", 0.3, "pad"),
            ("0.5", 0.15, "pad"), ("0.3", 0.15, "pad"), ("meanstd0.5", 0.15, "pad")]
if len(sys.argv) > 4:
    variants = variants[: int(sys.argv[4])]
idx = np.load(CACHE / f"index_{S2}.npz")
q1 = np.load(CACHE / f"q_{S1}_pad.npz")
maps = q1["maps"]
qc = np.load(CACHE / f"q_{S1}_crop.npz") if (CACHE / f"q_{S1}_crop.npz").exists() else None
for thr, ex, fr in variants:
    c = crop_feats(meta, maps, S1, thr, ex, S2, fr)
    name = f"loc {S1}->{S2} thr={thr} expand={ex} {fr} {pool}"
    record("2-loc", name + " [crop only]", metrics(score_matrix(c[pool], idx[pool]), meta), evals(S1, S2))
    both = np.stack([q1[pool], c[pool]], 1)
    record("2-loc", name + " [max(full-pad, crop)]", metrics(score_matrix(both, idx[pool]), meta), evals(S1, S2))
    record("2-loc", name + " [mean-emb(full-pad, crop)]",
           metrics(score_matrix(l2n(q1[pool] + c[pool]), idx[pool]), meta), evals(S1, S2))
