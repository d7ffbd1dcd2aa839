#!/usr/bin/env python3
"""Decode + preprocess throughput of the embedder, with and without JPEG draft mode.

    python benchmarks/bench_embedder_decode.py                 # dev query photos (640x480 JPEG)
    python benchmarks/bench_embedder_decode.py --threads 2 --images '/path/*.jpg' --mode pad

Draft mode lets libjpeg scale by 1/2, 1/4 or 1/8 inside the IDCT, as long as the
region of interest keeps at least the model's size on its shorter side. It runs
exactly what the service runs (`imagesearch.imaging.frame.Preprocessor`), on
bytes already in memory, so disk reads are not measured.
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from imagesearch.imaging.decode import ResizeMode
from imagesearch.imaging.frame import Preprocessor
from imagesearch.imaging.sniff import Limits

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = str(REPO.parent / "shared" / "datasets" / "dev" / "queries" / "*.jpg")


def measure(pre: Preprocessor, images: list[bytes], threads: int, min_seconds: float) -> float:
    """Images per second, repeating the whole set until at least `min_seconds` have passed."""
    done, started = 0, time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        while True:
            for _ in pool.map(pre, images) if threads > 1 else map(pre, images):
                done += 1
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds:
                return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=os.environ.get("BENCH_IMAGES", DEFAULT_IMAGES), help="glob of JPEG files")
    parser.add_argument("--size", type=int, default=224, help="model input side (default 224)")
    parser.add_argument("--mode", choices=[m.value for m in ResizeMode], default="crop")
    parser.add_argument("--threads", type=int, default=1, help="decode threads (default 1)")
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum time per measurement")
    args = parser.parse_args()

    paths = sorted(glob.glob(args.images))
    if not paths:
        parser.error(f"no files match {args.images}")
    images = [Path(p).read_bytes() for p in paths]
    limits = Limits(max_bytes=64 * 2**20, max_pixels=80_000_000)
    fast = Preprocessor(limits, (args.size, args.size), ResizeMode(args.mode), use_draft=True)
    full = Preprocessor(limits, (args.size, args.size), ResizeMode(args.mode), use_draft=False)

    diff = np.mean([np.abs(fast(b).astype(float) - full(b).astype(float)).mean() for b in images[:50]])
    measure(fast, images[:20], args.threads, 0.2)  # warm-up: page in libjpeg, fill caches
    with_draft = measure(fast, images, args.threads, args.seconds)
    without = measure(full, images, args.threads, args.seconds)
    print(f"{len(images)} images from {args.images}, {args.size}x{args.size} {args.mode}, {args.threads} thread(s)")
    print(f"  without draft: {without:8.1f} images/s  ({1000 / without:.2f} ms/image)")
    print(f"  with draft:    {with_draft:8.1f} images/s  ({1000 / with_draft:.2f} ms/image)")
    print(f"  speed-up:      {with_draft / without:8.2f}x   (mean |difference| {diff:.2f} of 255 per channel)")


if __name__ == "__main__":
    main()
