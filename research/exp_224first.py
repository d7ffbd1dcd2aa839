#!/usr/bin/env python3
"""Cheaper recipe: 224 first pass (final 7x7 * stride-16 14x14 map) -> 224 or 256 crop; honest split figures."""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, DATA, cached, embed_arrays, load_meta, net, open_rgb, resize  # noqa: E402
from evaluate import metrics, score_matrix  # noqa: E402
from loc import box_from_map  # noqa: E402
from post import apply_pcaw, fit_lw, fit_pcaw  # noqa: E402
from results import record  # noqa: E402
from train_head import load_views  # noqa: E402

meta = load_meta()
N = 1495
held = np.load(CACHE / "catalog_heldout.npy")
train = np.setdiff1d(np.arange(N), held)
unseen = np.isin(meta["q_gt"], held)
V, item = load_views("gem")


def crops(S2):
    def f():
        m = net()
        g = {}
        blocks = m._blocks
        last112 = max(i for i, b in enumerate(blocks) if b._project_conv.out_channels == 112)
        h = blocks[last112].register_forward_hook(lambda mod, inp, out: g.__setitem__("m", out))
        arrs = []
        for r in meta["queries"]:
            im = open_rgb(DATA / r["image"])
            a = resize(im, 224, "pad")
            with torch.inference_mode():
                fm = m.extract_features((torch.from_numpy(a[None].copy()).permute(0, 3, 1, 2).float() - 127) / 128)[0]
            mid = g["m"][0].abs().sum(0)
            up = torch.nn.functional.interpolate(fm.sum(0)[None, None], size=mid.shape, mode="bilinear", align_corners=False)[0, 0]
            b = box_from_map((up * mid / mid.mean()).numpy(), im.width, im.height, 224, "meanstd1.0", 0.0)
            arrs.append(resize(im, S2, "pad", box=b))
        h.remove()
        return embed_arrays(arrs)
    return cached(f"locmid_224_meanstd1.0_{S2}", f)["gem"]


for S2, cost in ((224, 2.0), (256, 2.31)):
    c = np.load(CACHE / "locmid_224_meanstd1.0_224_flipq.npz")["gem"] if S2 == 224 else crops(S2)
    idx = np.load(CACHE / f"index_{S2}.npz")["gem"]
    tight = np.load(CACHE / f"index_{S2}_tight_m0.0.npz")["gem"]
    I = np.concatenate([idx, tight])
    own = np.r_[np.arange(N), np.arange(N)]
    base = f"loc 224 (final*mid, mean+1sd, e0) -> {S2} crop | index normal+tight"
    for wname, (mu, P) in (("PCAw512 s0.3", fit_pcaw(I, 512, shrink=0.3)),
                           ("LW512 s0.5 fit on train split", fit_lw(idx, V, item, train, 512, 0.5)),
                           ("LW512 s0.5 fit on all items", fit_lw(idx, V, item, np.arange(N), 512, 0.5))):
        s = score_matrix(apply_pcaw(c, mu, P), apply_pcaw(I, mu, P), own)
        record("7-combo", f"{base} | {wname} | all", metrics(s, meta), cost)
        record("7-combo", f"{base} | {wname} | unseen half", metrics(s, meta, unseen), cost)
