#!/usr/bin/env python3
"""Write the recommended whitening (learned whitening, 512 d, fitted on all index items) to cache/."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE  # noqa: E402
from post import fit_lw  # noqa: E402
from train_head import load_views  # noqa: E402

V, item = load_views("gem")
idx = np.load(CACHE / "index_256.npz")["gem"]
mu, P = fit_lw(idx, V, item, np.arange(len(idx)), 512, 0.5)
np.savez(CACHE / "recommended_lw_256_512_s0.5.npz", mean=mu, P=P)
print("saved", P.shape)
