#!/usr/bin/env python3
"""3-evaluation alternative: 224 first pass (final 7x7 * mid 14x14 map) -> 224 crop + its mirror (1+1+1 = 3.0)."""
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, DATA, cached, embed_arrays, l2n, load_meta, net, open_rgb, resize  # noqa: E402
from evaluate import metrics, score_matrix  # noqa: E402
from loc import box_from_map  # noqa: E402
from post import apply_pcaw, fit_lw, fit_pcaw  # noqa: E402
from results import record  # noqa: E402
from train_head import load_views  # noqa: E402

meta = load_meta()
S1 = 224


def f():
    m = net()
    g = {}
    blocks = m._blocks
    last112 = max(i for i, b in enumerate(blocks) if b._project_conv.out_channels == 112)
    blocks[last112].register_forward_hook(lambda mod, inp, out: g.__setitem__("m", out))
    arrs, arrs_f = [], []
    for r in meta["queries"]:
        im = open_rgb(DATA / r["image"])
        a = resize(im, S1, "pad")
        with torch.inference_mode():
            fm = m.extract_features((torch.from_numpy(a[None].copy()).permute(0, 3, 1, 2).float() - 127) / 128)[0]
        mid = g["m"][0].abs().sum(0)
        up = torch.nn.functional.interpolate(fm.sum(0)[None, None], size=mid.shape, mode="bilinear", align_corners=False)[0, 0]
        b = box_from_map((up * mid / mid.mean()).numpy(), im.width, im.height, S1, "meanstd1.0", 0.0)
        c = resize(im, 224, "pad", box=b)
        arrs.append(c)
        arrs_f.append(np.ascontiguousarray(c[:, ::-1]))
    e, ef = embed_arrays(arrs), embed_arrays(arrs_f)
    return {"gem": e["gem"], "gem_flip": ef["gem"]}


z = cached("locmid_224_meanstd1.0_224_flipq", f)
idx = np.load(CACHE / "index_224.npz")["gem"]
tight = np.load(CACHE / "index_224_tight_m0.0.npz")["gem"]
I = np.concatenate([idx, tight])
own = np.r_[np.arange(1495), np.arange(1495)]
V, item = load_views("gem")
for wname, (mu, P) in (("PCAw512 s0.3", fit_pcaw(I, 512, shrink=0.3)), ("LW512 s0.5 (all items)", fit_lw(idx, V, item, np.arange(1495), 512, 0.5))):
    W = lambda x: apply_pcaw(x, mu, P)  # noqa: E731
    base = f"loc 224 (final*mid) -> 224 crop | index normal+tight | {wname}"
    record("7-combo", f"{base} | crop only", metrics(score_matrix(W(z["gem"]), W(I), own), meta), 2.0)
    record("7-combo", f"{base} | max[crop, mirrored crop]",
           metrics(score_matrix(np.stack([W(z["gem"]), W(z["gem_flip"])], 1), W(I), own), meta), 3.0)
    record("7-combo", f"{base} | mean-emb[crop, mirrored crop]",
           metrics(score_matrix(W(l2n(z["gem"] + z["gem_flip"])), W(I), own), meta), 3.0)
