#!/usr/bin/env python3
"""The recommended query pipeline, end to end and timed per query (batch 1), + its dev metrics.

  1. decode (Pillow, EXIF transpose), letterbox the whole photo on white at 224 px
  2. EfficientNet-Lite0 trunk -> last feature map [1280, 7, 7] (eval 1)
  3. localisation map = bilinear_up(channel-sum of the last map, 7x7 -> 14x14)
                          * channel-sum of |output of the last 112-channel block| (stride 16, 14x14), / its mean
     -> bilinear to 56 x 56 -> keep photo area -> threshold mean + 1.0 std
     -> largest 4-connected component -> its box in photo pixels (no expansion)
  4. crop the ORIGINAL photo to the box, letterbox on white at 256 px (eval 2, 1.31 x a 224 eval; total 2.31)
  5. GeM p=3 over the 8x8 map -> L2 -> learned whitening (post.fit_lw: intra-item covariance of synthetic
     views vs clean shots, shrink 0.5 x mean, PCA of the whitened index, 512 dims) -> L2
Index side: each catalog image twice (max per product): letterboxed at 256 px, and trimmed to the object's
bounding box then letterboxed at 256 px -> GeM p=3 -> L2 -> same whitening.
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, DATA, feature_maps, load_meta, open_rgb, resize  # noqa: E402
from evaluate import fmt, metrics, score_matrix  # noqa: E402
from loc import box_from_map  # noqa: E402
from post import apply_pcaw, fit_pcaw  # noqa: E402
from results import record  # noqa: E402

S1, S2, THR, EXPAND, DIM, SHRINK = 224, 256, "meanstd1.0", 0.0, 512, 0.5
_MID = {}


def embed_query(path, mu, P):
    im = open_rgb(path)
    fm = feature_maps(resize(im, S1, "pad")[None])[0]
    mid = _MID["out"][0].abs().sum(0)
    up = torch.nn.functional.interpolate(fm.sum(0)[None, None], size=mid.shape, mode="bilinear", align_corners=False)[0, 0]
    amap = (up * mid / mid.mean()).numpy()
    box = box_from_map(amap, im.width, im.height, S1, THR, EXPAND)
    fm2 = feature_maps(resize(im, S2, "pad", box=box)[None])
    g = fm2.clamp_min(1e-6).pow(3).mean((2, 3)).pow(1 / 3).numpy()
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return apply_pcaw(g, mu, P)[0]


if __name__ == "__main__":
    meta = load_meta()
    idx = np.load(CACHE / f"index_{S2}.npz")["gem"]
    tight = np.load(CACHE / f"index_{S2}_tight_m0.0.npz")["gem"]  # exp_tight.py: object-trimmed shots
    from post import fit_lw
    from train_head import load_views
    V, item = load_views("gem")
    mu, P = fit_lw(idx, V, item, np.arange(len(idx)), DIM, SHRINK)  # learned whitening, all index items
    np.savez(CACHE / "recommended_lw_256_512_s0.5.npz", mean=mu, P=P)
    owner = np.r_[np.arange(len(idx)), np.arange(len(idx))]
    torch.set_num_threads(2)
    from common import net
    blocks = net()._blocks
    last112 = max(i for i, b in enumerate(blocks) if b._project_conv.out_channels == 112)
    blocks[last112].register_forward_hook(lambda mod, inp, out: _MID.__setitem__("out", out))
    embed_query(DATA / meta["queries"][0]["image"], mu, P)  # warm-up
    q, times = [], []
    for r in meta["queries"]:
        t = time.perf_counter()
        q.append(embed_query(DATA / r["image"], mu, P))
        times.append(time.perf_counter() - t)
    m = metrics(score_matrix(np.array(q), apply_pcaw(np.concatenate([idx, tight]), mu, P), owner), meta)
    ms = 1000 * float(np.median(times))
    print(fmt(m), f"median {ms:.0f} ms/query, mean {1000 * np.mean(times):.0f} ms (torch CPU, 2 threads, shared machine)")
    record("final", "RECOMMENDED: loc 224 (final*mid, mean+1sd, e0) -> 256 crop, GeM, index normal+tight, LW512 s0.5 "
           "[end-to-end pipeline.py]", m, 2.31, ms)
