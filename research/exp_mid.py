#!/usr/bin/env python3
"""Localisation from a finer, intermediate (stride-16) feature map of the SAME first pass (free)."""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, DATA, cached, embed_arrays, load_meta, net, open_rgb, read_csv, resize  # noqa: E402
from loc import box_from_map  # noqa: E402

meta = load_meta()
S1 = 288


def mid_maps():
    m = net()
    grabbed = {}
    blocks = m._blocks
    # last block of the 112-channel (stride-16) stage
    last112 = max(i for i, b in enumerate(blocks) if b._project_conv.out_channels == 112)
    blocks[last112].register_forward_hook(lambda mod, inp, out: grabbed.__setitem__("m", out))
    outs = []
    for r in meta["queries"]:
        a = resize(open_rgb(DATA / r["image"]), S1, "pad")
        with torch.inference_mode():
            x = (torch.from_numpy(a[None].copy()).permute(0, 3, 1, 2).float() - 127) / 128
            m.extract_features(x)
        outs.append(grabbed["m"][0].abs().sum(0).numpy())
    return {"mid": np.array(outs)}


mid = cached(f"mid112_{S1}", mid_maps)["mid"]
fin = np.load(CACHE / f"q_{S1}_pad.npz")["maps"].astype(np.float32).sum(1)
qm = {r["query_id"]: r for r in read_csv("queries_meta.csv")}
ext = np.array([float(qm[r["query_id"]]["extent"]) for r in meta["queries"]])
W = np.array([int(qm[r["query_id"]]["width"]) for r in meta["queries"]])
H = np.array([int(qm[r["query_id"]]["height"]) for r in meta["queries"]])
up = torch.nn.functional.interpolate(torch.from_numpy(fin)[:, None], size=mid.shape[-2:], mode="bilinear",
                                     align_corners=False)[:, 0].numpy()
cands = {"final 9x9": fin, "mid 18x18 |x| sum": mid, "final(up) * mid": up * mid / mid.mean((1, 2), keepdims=True)}
for name, maps in cands.items():
    for thr in ("meanstd0.5", "meanstd1.0"):
        b = np.array([box_from_map(f, W[i], H[i], S1, thr, 0.0) for i, f in enumerate(maps)])
        be = np.maximum((b[:, 2] - b[:, 0]) / W, (b[:, 3] - b[:, 1]) / H)
        print(f"{name:22s} {thr:11s} extent corr {np.corrcoef(be, ext)[0, 1]:.2f} median ratio {np.median(be / ext):.2f}"
              f" within 0.8-1.5x {np.mean((be / ext > 0.8) & (be / ext < 1.5)):.2f}")
np.save(CACHE / "mid_combo_288.npy", cands["final(up) * mid"])
