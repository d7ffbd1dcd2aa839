"""Step 2: subject localisation from the CNN's own last feature map (query side only).

First pass: the whole photo letterboxed (pad) at S px -> feature map [1280, S/32, S/32].
Activation = channel sum, bilinearly upsampled to S/4 resolution, restricted to the photo area
(not the white letterbox). Threshold (at the mean, or at a fraction of the max), keep the largest
4-connected component, take its bounding box, map back to photo pixels, expand by `expand` of the
box size on each side, clip to the photo. Second pass: crop the original photo to the box and
embed it (letterboxed on white, like a catalog shot, or squared up with photo context).
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from common import DATA, cached, embed_arrays, open_rgb, resize


def largest_component(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    lab = np.zeros((h, w), np.int32)
    best, best_n, cur = 0, 0, 0
    for y in range(h):
        for x in range(w):
            if mask[y, x] and not lab[y, x]:
                cur += 1
                n = 0
                dq = deque([(y, x)])
                lab[y, x] = cur
                while dq:
                    cy, cx = dq.popleft()
                    n += 1
                    for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                        if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not lab[ny, nx]:
                            lab[ny, nx] = cur
                            dq.append((ny, nx))
                if n > best_n:
                    best, best_n = cur, n
    return lab == best


def box_from_map(fmap: np.ndarray, img_w: int, img_h: int, size: int, thr="mean", expand=0.15, weight=None):
    """fmap [C,h,w] of the letterboxed photo (or a 2-D score map [h,w]) -> (x0,y0,x1,y1) in photo pixels."""
    fm = torch.from_numpy(fmap.astype(np.float32))
    if fm.ndim == 2:
        a = fm
    else:
        a = (fm if weight is None else fm * torch.from_numpy(weight)[:, None, None]).sum(0)
    g = size // 4
    a = F.interpolate(a[None, None], size=(g, g), mode="bilinear", align_corners=False)[0, 0].numpy()
    s = size / max(img_w, img_h)
    cw, ch = round(img_w * s), round(img_h * s)
    ox, oy = (size - cw) // 2, (size - ch) // 2
    valid = np.zeros((g, g), bool)
    valid[int(np.ceil(oy / 4)):int((oy + ch) / 4), int(np.ceil(ox / 4)):int((ox + cw) / 4)] = True
    v = a[valid]
    if thr == "mean":
        t = v.mean()
    elif isinstance(thr, str) and thr.startswith("meanstd"):
        t = v.mean() + float(thr[7:]) * v.std()
    else:
        t = v.min() + float(thr) * (v.max() - v.min())
    mask = (a > t) & valid
    if not mask.any():
        return (0, 0, img_w, img_h)
    comp = largest_component(mask)
    ys, xs = np.nonzero(comp)
    # cell (y, x) of the g-grid covers pixels [4y, 4y+4) of the square
    x0, x1 = (xs.min() * 4 - ox) / s, ((xs.max() + 1) * 4 - ox) / s
    y0, y1 = (ys.min() * 4 - oy) / s, ((ys.max() + 1) * 4 - oy) / s
    bw, bh = x1 - x0, y1 - y0
    x0, x1 = max(0.0, x0 - expand * bw), min(float(img_w), x1 + expand * bw)
    y0, y1 = max(0.0, y0 - expand * bh), min(float(img_h), y1 + expand * bh)
    return (x0, y0, x1, y1)


def square_up(box, img_w, img_h):
    """Grow the shorter side of the box to a square using photo context (shifted/clipped to the photo)."""
    x0, y0, x1, y1 = box
    side = min(max(x1 - x0, y1 - y0), img_w, img_h)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    nx0 = min(max(0.0, cx - side / 2), img_w - side)
    ny0 = min(max(0.0, cy - side / 2), img_h - side)
    return (nx0, ny0, nx0 + side, ny0 + side)


def crop_feats(meta, maps, size, thr="mean", expand=0.15, size2=224, framing="pad", tag="", weight=None):
    key = f"loc_{size}_{thr}_{expand}_{size2}_{framing}{tag}"

    def f():
        arrs, boxes = [], []
        for r, fm in zip(meta["queries"], maps):
            im = open_rgb(DATA / r["image"])
            b = box_from_map(fm, im.width, im.height, size, thr, expand, weight)
            if framing == "square":
                b = square_up(b, im.width, im.height)
            boxes.append(b)
            arrs.append(resize(im, size2, "squash" if framing == "square" else "pad", box=b))
        res = embed_arrays(arrs)
        res["boxes"] = np.array(boxes, np.float32)
        return res
    return cached(key, f)
