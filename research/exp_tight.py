#!/usr/bin/env python3
"""Index-side framing (free at query time): catalog/distractor shots trimmed to the object's bounding box
(pixels differing from the border's median colour by > 14 levels) then letterboxed on white, optionally
with a margin; indexed alone or together with the normal shot (max per item)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, DATA, cached, embed_arrays, load_meta, open_rgb, resize  # noqa: E402
from evaluate import metrics, score_matrix  # noqa: E402
from post import apply_pcaw, fit_pcaw  # noqa: E402
from results import record  # noqa: E402

meta = load_meta()
S2 = int(sys.argv[2]) if len(sys.argv) > 2 else 256
MARGIN = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0


def obj_box(im, tol=14):
    a = np.asarray(im).astype(np.int16)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    diff = np.abs(a - np.median(border, 0)).max(-1) > tol
    ys, xs = np.nonzero(diff)
    if len(xs) == 0:
        return (0, 0, im.width, im.height)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    w, h = x1 - x0, y1 - y0
    return (max(0, x0 - MARGIN * w), max(0, y0 - MARGIN * h), min(im.width, x1 + MARGIN * w), min(im.height, y1 + MARGIN * h))


def f():
    arrs = []
    for r in meta["index"]:
        im = open_rgb(DATA / r["image"])
        arrs.append(resize(im, S2, "pad", box=obj_box(im)))
    return embed_arrays(arrs)


tight = cached(f"index_{S2}_tight_m{MARGIN}", f)["gem"]
idx = np.load(CACHE / f"index_{S2}.npz")["gem"]
c = np.load(CACHE / f"locmid_288_meanstd1.0_{S2}.npz")["gem"]
base = f"loc 288->{S2} map=final*mid thr=meanstd1.0 e0"
owner = np.r_[np.arange(1495), np.arange(1495)]
for name, I, own in ((f"index tight-trimmed (margin {MARGIN})", tight, None),
                     (f"index normal + tight (margin {MARGIN}), max per item", np.concatenate([idx, tight]), owner)):
    record("3-index", f"{base} | {name}", metrics(score_matrix(c, I, own), meta), round(1.65 + (S2 / 224) ** 2, 2))
    mu, P = fit_pcaw(I, 512, shrink=0.3)
    record("3-index", f"{base} +PCAw512 s0.3 | {name}",
           metrics(score_matrix(apply_pcaw(c, mu, P), apply_pcaw(I, mu, P), own), meta), round(1.65 + (S2 / 224) ** 2, 2))
mu, P = fit_pcaw(idx, 512, shrink=0.3)
I = l2 = (idx + tight)
I = I / np.linalg.norm(I, axis=1, keepdims=True)
mu, P = fit_pcaw(I, 512, shrink=0.3)
record("3-index", f"{base} +PCAw512 s0.3 | index mean-emb(normal, tight m{MARGIN})",
       metrics(score_matrix(apply_pcaw(c, mu, P), apply_pcaw(I, mu, P)), meta), round(1.65 + (S2 / 224) ** 2, 2))
