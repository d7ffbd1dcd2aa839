#!/usr/bin/env python3
"""Compute and cache pooled features (avg / GeM p=3 / max) for the index and the queries.

index_{size}[_flip]: catalog+distractors (square images: pad == crop == squash), optionally mirrored.
q_{size}_{mode}: queries; pad-mode query caches also keep the last feature maps (for localisation).
"""
import sys
from pathlib import Path

import numpy as np
from PIL import ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, cached, embed_arrays, load_meta, open_rgb, resize  # noqa: E402

meta = load_meta()


def index_feats(size, flip=False):
    def f():
        arrs = []
        for r in meta["index"]:
            im = open_rgb(DATA / r["image"])
            if flip:
                im = ImageOps.mirror(im)
            arrs.append(resize(im, size, "pad"))
        return embed_arrays(arrs)
    return cached(f"index_{size}" + ("_flip" if flip else ""), f)


def query_feats(size, mode):
    def f():
        arrs = [resize(open_rgb(DATA / r["image"]), size, mode) for r in meta["queries"]]
        return embed_arrays(arrs, keep_maps=(mode == "pad"))
    return cached(f"q_{size}_{mode}", f)


if __name__ == "__main__":
    for size in (224, 256, 288):
        for mode in ("crop", "pad", "squash"):
            query_feats(size, mode)
    for size in (224, 288, 256):
        index_feats(size)
    for size in (224, 288, 256):
        index_feats(size, flip=True)
