#!/usr/bin/env python3
"""Step 6 data: synthetic query-like views of every index item, embedded once (backbone frozen).

Each view is embedded the way a localised query crop is: the (known) object box, jittered
(expand -5..+25 % per side, shift +-8 %), letterboxed on white at SIZE px; 25 % of views are instead the
whole photo, centre-cropped. Saves cache/views_{SIZE}_{chunk}.npz with item index + avg/gem/max.
"""
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, DATA, embed_arrays, load_meta, open_rgb, resize  # noqa: E402
from synth import cutout, make_view  # noqa: E402

SIZE = int(os.environ.get("SIZE", "224"))
VIEWS = int(os.environ.get("VIEWS", "4"))
meta = load_meta()
n = len(meta["index"])
n_cat = meta["n_cat"]
rng0 = np.random.default_rng(12345)
# split for the honest estimate: even/odd by a random permutation of catalog positions
perm = rng0.permutation(n_cat)
np.save(CACHE / "catalog_heldout.npy", np.sort(perm[: n_cat // 2]))  # catalog items NOT used for training
cut = [cutout(open_rgb(DATA / r["image"])) for r in meta["index"]]
held = set(np.load(CACHE / "catalog_heldout.npy").tolist())
clutter = [c for i, c in enumerate(cut) if i not in held]
for c in clutter:
    c.thumbnail((128, 128))
for c in cut:
    c.thumbnail((320, 320))  # clutter only from training items

for v in range(VIEWS):
    out = CACHE / f"views_{SIZE}_{v}.npz"
    if out.exists():
        continue
    rng = np.random.default_rng(1000 + v)
    arrs = []
    for i in range(n):
        im, (x0, y0, x1, y1) = make_view(cut[i], rng, clutter)
        if rng.random() < 0.25:
            arrs.append(resize(im, SIZE, "crop"))
            continue
        w, h = x1 - x0, y1 - y0
        e = rng.uniform(-0.05, 0.25, 4)
        sx, sy = rng.uniform(-0.08, 0.08, 2)
        b = (max(0, x0 - e[0] * w + sx * w), max(0, y0 - e[1] * h + sy * h),
             min(im.width, x1 + e[2] * w + sx * w), min(im.height, y1 + e[3] * h + sy * h))
        arrs.append(resize(im, SIZE, "pad", box=b))
    res = embed_arrays(arrs)
    res["item"] = np.arange(n)
    np.savez(out, **res)
    print(f"view {v} done", flush=True)
