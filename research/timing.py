#!/usr/bin/env python3
"""Batch-1 latency of one trunk evaluation per input size (torch CPU, 2 threads), median of N runs."""
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, feature_maps, load_meta, open_rgb, resize  # noqa: E402

torch.set_num_threads(2)
meta = load_meta()
paths = [DATA / r["image"] for r in meta["queries"][:40]]
for size in (224, 256, 288):
    x = np.random.randint(0, 255, (1, size, size, 3), np.uint8)
    feature_maps(x)
    ts = []
    for _ in range(40):
        t = time.perf_counter()
        feature_maps(x)
        ts.append(time.perf_counter() - t)
    print(f"{size}px trunk eval: median {1000 * np.median(ts):.1f} ms  (ratio to FLOP model {(size / 224) ** 2:.2f})")
ts = []
for p in paths:
    t = time.perf_counter()
    a = resize(open_rgb(p), 224, "crop")
    feature_maps(a[None]).mean((2, 3))
    ts.append(time.perf_counter() - t)
print(f"baseline end-to-end (decode + 224 crop + 1 eval + avg pool): median {1000 * np.median(ts):.1f} ms")
