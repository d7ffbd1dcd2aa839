#!/usr/bin/env python3
"""Step 2, refined: first pass at 288 px (9x9 map), tighter thresholds; best-matching region box."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, DATA, cached, embed_arrays, load_meta, open_rgb, resize  # noqa: E402
from evaluate import metrics, score_matrix  # noqa: E402
from loc import crop_feats  # noqa: E402
from post import apply_pcaw, fit_pcaw  # noqa: E402
from results import evals, record  # noqa: E402

meta = load_meta()
pool = "gem"
idx = np.load(CACHE / "index_224.npz")[pool]
mu, P = fit_pcaw(idx, 512, shrink=0.1)
full288 = np.load(CACHE / "q_288_pad.npz")
qc224 = np.load(CACHE / "q_224_crop.npz")[pool]


def rep(name, c, cost):
    record("2-loc", name + " [crop only]", metrics(score_matrix(c, idx), meta), cost)
    record("2-loc", name + " [crop only] +PCAw512", metrics(score_matrix(apply_pcaw(c, mu, P), apply_pcaw(idx, mu, P)), meta), cost)


for thr, ex in (("meanstd0.5", 0.0), ("0.5", 0.0), ("meanstd0.5", 0.1), ("meanstd1.0", 0.1)):
    c = crop_feats(meta, full288["maps"], 288, thr, ex, 224, "pad")
    rep(f"loc 288->224 thr={thr} expand={ex} pad {pool}", c[pool], evals(288, 224))

# the best-matching region (regional GeM of the 288 map vs the index) as the box
def f():
    boxes = np.load(CACHE / "regbox_288.npy")
    arrs = [resize(open_rgb(DATA / r["image"]), 224, "pad", box=tuple(b)) for r, b in zip(meta["queries"], boxes)]
    return embed_arrays(arrs)
c = cached("loc_regbox_288_224", f)
rep("loc 288->224 best-matching region box (regional GeM vs index) pad gem", c[pool], evals(288, 224))
