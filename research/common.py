"""Shared helpers for the retrieval-quality experiments (research only, not used by services).

Feature extraction mirrors the production contract of tools/export_model.py:
uint8 RGB NHWC -> (x - 127) / 128 -> EfficientNet-Lite0 trunk (extract_features) -> pooling.
Resizing mirrors services/embedder/imagesearch_embedder/imaging.py: Pillow BICUBIC, reducing_gap 2.0,
letterbox on white for "pad", centre crop for "crop"; "squash" = plain resize to a square.
"""
from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
# ../shared/datasets/dev beside the repository, unless IMAGESEARCH_DEV says otherwise.
DATA = Path(os.environ.get("IMAGESEARCH_DEV", Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dev"))
CACHE = Path(__file__).resolve().parent / "cache"
CACHE.mkdir(exist_ok=True)
RESAMPLE = Image.Resampling.BICUBIC
REDUCING_GAP = 2.0
WHITE = (255, 255, 255)

_NET = None


def net():
    """EfficientNet-Lite0 (ImageNet weights), built exactly like tools/export_model.py does."""
    global _NET
    if _NET is None:
        import torch
        sys.path.insert(0, str(REPO / "tools"))
        from export_model import load_efficientnet  # noqa: E402  (read-only reuse)
        torch.set_num_threads(int(os.environ.get("THREADS", "2")))
        _NET = load_efficientnet()
    return _NET


def read_csv(name):
    with open(DATA / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def load_meta():
    cat = read_csv("catalog.csv")
    dis = read_csv("distractors.csv")
    qs = read_csv("queries.csv")
    index = cat + dis  # index order: catalog first, then distractors
    ids = [r["product_id"] for r in index]
    cats = np.array([r["category"] for r in index])
    pos = {pid: i for i, pid in enumerate(ids)}
    q_gt = np.array([pos[r["product_id"]] for r in qs])
    return dict(index=index, ids=ids, cats=cats, queries=qs, q_gt=q_gt, n_cat=len(cat))


def open_rgb(path) -> Image.Image:
    im = Image.open(path)
    im = ImageOps.exif_transpose(im)
    return im.convert("RGB")


def resize(im: Image.Image, size: int, mode: str, box=None) -> np.ndarray:
    """box in pixel coords of im (x0, y0, x1, y1); returns uint8 HxWx3."""
    if box is None:
        box = (0, 0, im.width, im.height)
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if mode == "squash":
        out = im.resize((size, size), RESAMPLE, box=box, reducing_gap=REDUCING_GAP)
    elif mode == "crop":
        if w > h:
            cx = (x0 + x1) / 2
            b = (cx - h / 2, y0, cx + h / 2, y1)
        else:
            cy = (y0 + y1) / 2
            b = (x0, cy - w / 2, x1, cy + w / 2)
        out = im.resize((size, size), RESAMPLE, box=b, reducing_gap=REDUCING_GAP)
    elif mode == "pad":
        s = size / max(w, h)
        sz = (max(1, min(size, round(w * s))), max(1, min(size, round(h * s))))
        fitted = im.resize(sz, RESAMPLE, box=box, reducing_gap=REDUCING_GAP)
        out = Image.new("RGB", (size, size), WHITE)
        out.paste(fitted, ((size - sz[0]) // 2, (size - sz[1]) // 2))
    else:
        raise ValueError(mode)
    return np.asarray(out, dtype=np.uint8)


def feature_maps(batch_u8: np.ndarray):
    """uint8 [N,H,W,3] -> torch float [N,1280,h,w] (after the head's ReLU6)."""
    import torch
    with torch.inference_mode():
        x = torch.from_numpy(batch_u8).permute(0, 3, 1, 2).float()
        x = (x - 127.0) / 128.0
        return net().extract_features(x)


def pool_all(fm, p=3.0):
    """-> dict of L2-normalised pooled features (numpy float32)."""
    import torch
    avg = fm.mean((2, 3))
    gem = fm.clamp_min(1e-6).pow(p).mean((2, 3)).pow(1.0 / p)
    mx = fm.amax((2, 3))
    out = {}
    for k, v in (("avg", avg), ("gem", gem), ("max", mx)):
        out[k] = torch.nn.functional.normalize(v, dim=1).numpy().astype(np.float32)
    return out


def l2n(x, axis=-1):
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def embed_arrays(arrs, bs=32, keep_maps=False):
    """list of uint8 HxWx3 (same size) -> dict(avg, gem, max[, maps])"""
    outs = {"avg": [], "gem": [], "max": []}
    maps = []
    for i in range(0, len(arrs), bs):
        fm = feature_maps(np.stack(arrs[i:i + bs]))
        for k, v in pool_all(fm).items():
            outs[k].append(v)
        if keep_maps:
            maps.append(fm.numpy().astype(np.float16))
    res = {k: np.concatenate(v) for k, v in outs.items()}
    if keep_maps:
        res["maps"] = np.concatenate(maps)
    return res


def cached(name, fn):
    """npz cache in research/cache/."""
    path = CACHE / f"{name}.npz"
    if path.exists():
        z = np.load(path)
        return {k: z[k] for k in z.files}
    t = time.time()
    res = fn()
    np.savez(path, **res)
    print(f"[cache] computed {name} in {time.time() - t:.1f}s", file=sys.stderr)
    return res
