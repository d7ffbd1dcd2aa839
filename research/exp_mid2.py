#!/usr/bin/env python3
"""Embed the crops localised with final(up)*mid-level map (288 first pass) and evaluate."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, DATA, cached, embed_arrays, load_meta, open_rgb, resize  # noqa: E402
from evaluate import metrics, score_matrix  # noqa: E402
from loc import box_from_map  # noqa: E402
from post import apply_pcaw, fit_pcaw  # noqa: E402
from results import evals, record  # noqa: E402

meta = load_meta()
combo = np.load(CACHE / "mid_combo_288.npy")
VARS = [(256, "meanstd0.5", 0.0), (256, "meanstd1.0", 0.0)]
if len(sys.argv) > 1:
    VARS = [(int(a.split(":")[0]), a.split(":")[1], float(a.split(":")[2])) for a in sys.argv[1:]]
for S2, thr, ex in VARS:
    def f():
        arrs, boxes = [], []
        for r, mp in zip(meta["queries"], combo):
            im = open_rgb(DATA / r["image"])
            b = box_from_map(mp, im.width, im.height, 288, thr, ex)
            boxes.append(b)
            arrs.append(resize(im, S2, "pad", box=b))
        res = embed_arrays(arrs)
        res["boxes"] = np.array(boxes)
        return res
    c = cached(f"locmid_288_{thr}_{S2}" + (f"_e{ex}" if ex else ""), f)["gem"]
    idx = np.load(CACHE / f"index_{S2}.npz")["gem"]
    name = f"loc 288->{S2} map=final(up)*|mid112| thr={thr} e{ex} gem"
    record("2-loc", name + " [crop only]", metrics(score_matrix(c, idx), meta), evals(288, S2))
    mu, P = fit_pcaw(idx, 512, shrink=0.3)
    record("2-loc", name + " [crop only] +PCAw512 s0.3",
           metrics(score_matrix(apply_pcaw(c, mu, P), apply_pcaw(idx, mu, P)), meta), evals(288, S2))
