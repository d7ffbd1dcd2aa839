"""Fitting an adaptation: clean shots and synthetic views in, a whitening and a calibration out.

Two passes over the catalog, each item independent (a thread pool: Pillow and
numpy release the GIL for the heavy parts):
1. decode every shot, frame it as the embedder frames catalog images, embed it;
   and keep a small cut-out of it as clutter for other items' scenes;
2. per item, make `views` synthetic photos (+1 for the calibration), frame each
   as a localised query crop, embed them.
Then fit the learned whitening on the fitting views, and the same-product
calibration on the extra views scored against the whitened catalog, as searches
would score them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from imagesearch.adaptation.embedding import BaseModel, framing
from imagesearch.adaptation.synthetic import make_view, query_crop
from imagesearch.adaptation.whitening import Whitening, fit_learned_whitening
from imagesearch.common.types import Floats, Pixels
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.imaging.objects import cutout

T = TypeVar("T")
R = TypeVar("R")
# Clutter cut-outs are pasted at 15-60 % of a 320 px frame: 128 px keeps them sharp enough and small in memory.
CLUTTER_PIXELS = 128
# Items per embedding batch (and per unit of thread-pool work).
CHUNK = 32
# Hits per calibration view that become examples, as tools/fit_calibration.py takes a query's top 10.
CALIBRATION_TOP = 10


class AdaptationError(ValueError):
    """The catalog cannot be adapted to (too small, unreadable images); the message says which."""


@dataclass(frozen=True)
class AdaptOptions:
    views: int = 3
    dimension: int = 512
    shrinkage: float = 0.5
    image_size: int = 256
    resize_mode: str = "crop"
    seed: int = 0
    workers: int = 2


@dataclass
class Adaptation:
    whitening: Whitening
    calibration: ScoreCalibration
    items: int
    views: int
    seconds: dict[str, float] = field(default_factory=dict)
    # Synthetic-view retrieval before/after the whitening (the calibration views: never fitted on).
    synthetic_recall_at_1: tuple[float, float] = (0.0, 0.0)
    calibration_log_loss: float = 0.0
    skipped: list[str] = field(default_factory=list)


Progress = Callable[[str, int], Callable[[int], None]]


def _no_progress(_: str, __: int) -> Callable[[int], None]:
    return lambda _n: None


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def adapt(
    images: Sequence[tuple[str, Path]], base: BaseModel, options: AdaptOptions, progress: Progress = _no_progress
) -> Adaptation:
    """Fit an adaptation to the catalog shots `images` ((product id, path), one per item)."""
    if len(images) < 2:
        raise AdaptationError(f"need at least 2 catalog images to adapt to, got {len(images)}")
    if options.views < 1:
        raise AdaptationError(f"views must be >= 1, got {options.views}")
    frames = framing(options.image_size, options.resize_mode)
    seconds: dict[str, float] = {}
    skipped: list[str] = []

    # Pass 1: clean shots.
    started = time.perf_counter()

    def clean(item: tuple[str, Path]) -> tuple[Pixels, Image.Image] | None:
        product_id, path = item
        try:
            data = path.read_bytes()
            framed = frames.plain(data)
            shot = Image.open(path).convert("RGB")
        except Exception as err:  # noqa: BLE001 - a bad image is reported and left out, not fatal
            skipped.append(f"{product_id} ({path}): {err}")
            return None
        clutter = cutout(shot)
        clutter.thumbnail((CLUTTER_PIXELS, CLUTTER_PIXELS))
        return framed, clutter

    kept: list[tuple[str, Path]] = []
    clean_vectors: list[Floats] = []
    clutter: list[Image.Image] = []
    tick = progress("catalog shots", len(images))
    with ThreadPoolExecutor(options.workers) as pool:
        for chunk in _chunks(images, CHUNK):
            results = list(pool.map(clean, chunk))
            ok = [(item, r) for item, r in zip(chunk, results) if r is not None]
            if ok:
                clean_vectors.append(base.embed(np.stack([r[0] for _, r in ok])))
                kept.extend(item for item, _ in ok)
                clutter.extend(r[1] for _, r in ok)
            tick(len(chunk))
    if len(kept) < 2:
        raise AdaptationError(
            f"only {len(kept)} catalog images could be read; need at least 2: " + "; ".join(skipped[:5])
        )
    index = np.concatenate(clean_vectors)
    seconds["catalog shots"] = time.perf_counter() - started

    # Pass 2: synthetic views (rounds 0..views-1 fit the whitening, round `views` calibrates).
    started = time.perf_counter()
    rounds = options.views + 1

    def views_of(position: int) -> list[Pixels]:
        _, path = kept[position]
        obj = cutout(Image.open(path).convert("RGB"))
        obj.thumbnail((256, 256))
        out = []
        for round_ in range(rounds):
            # One generator per (seed, round, item): the same views whatever the thread scheduling.
            rng = np.random.default_rng([options.seed, round_, position])
            view = make_view(obj, rng, clutter)
            out.append(frames.box(frames.decode_photo(view.jpeg), query_crop(view, rng)))
        return out

    view_vectors = np.empty((rounds, len(kept), index.shape[1]), dtype=np.float32)
    tick = progress("synthetic views", len(kept) * rounds)
    with ThreadPoolExecutor(options.workers) as pool:
        for start in range(0, len(kept), CHUNK):
            positions = range(start, min(start + CHUNK, len(kept)))
            arrays = list(pool.map(views_of, positions))
            batch = np.stack([a for per_item in arrays for a in per_item])
            vectors = base.embed(batch).reshape(len(positions), rounds, -1)
            view_vectors[:, positions.start : positions.stop] = vectors.transpose(1, 0, 2)
            tick(len(positions) * rounds)
    seconds["synthetic views"] = time.perf_counter() - started

    started = time.perf_counter()
    fit_views = view_vectors[: options.views].reshape(-1, index.shape[1])
    fit_items = np.tile(np.arange(len(kept)), options.views)
    whitening = fit_learned_whitening(index, fit_views, fit_items, options.dimension, options.shrinkage)

    held = view_vectors[options.views]
    before = float(np.mean(np.argmax(held @ index.T, axis=1) == np.arange(len(kept))))
    scores = whitening.apply(held) @ whitening.apply(index).T
    after = float(np.mean(np.argmax(scores, axis=1) == np.arange(len(kept))))
    top = np.argsort(-scores, axis=1)[:, :CALIBRATION_TOP]
    example_scores = np.take_along_axis(scores, top, axis=1).ravel()
    labels = (top == np.arange(len(kept))[:, None]).ravel().astype(np.float64)
    calibration = ScoreCalibration.fit(example_scores, labels)
    seconds["fit"] = time.perf_counter() - started
    return Adaptation(
        whitening=whitening,
        calibration=calibration,
        items=len(kept),
        views=int(fit_views.shape[0]),
        seconds=seconds,
        synthetic_recall_at_1=(before, after),
        calibration_log_loss=calibration.log_loss(example_scores, labels),
        skipped=skipped,
    )
