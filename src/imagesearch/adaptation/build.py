"""Fitting an adaptation: clean shots and synthetic views in, a whitening and a calibration out.

Two passes over the catalog, each item independent (a thread pool: Pillow and
numpy release the GIL for the heavy parts):
1. decode every shot, frame it as the embedder frames catalog images, embed it;
   and keep a small cut-out of it as clutter for other items' scenes;
2. per item, make `views` synthetic photos (+1 for the calibration), frame each
   as a localised query crop, embed them;
3. (learned localisation, when asked for) per item, one more synthetic photo framed
   whole as the embedder's first pass frames it, its feature maps kept for the cells
   of the product's true box and around it (objectness.py).
Then fit the learned whitening on the fitting views, the same-product
calibration on the extra views scored against the whitened catalog, as searches
would score them, and the localisation map on the cells of all but every tenth
item's view, which measure it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from imagesearch.adaptation import objectness as loc
from imagesearch.adaptation.embedding import BaseModel, framing
from imagesearch.adaptation.synthetic import make_view, query_crop
from imagesearch.adaptation.whitening import Whitening, fit_learned_whitening
from imagesearch.common.types import Floats, Pixels
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.contracts.model import SALIENCY
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.localize import subject_box
from imagesearch.imaging.objects import cutout, relative_box

T = TypeVar("T")
R = TypeVar("R")
# Clutter cut-outs are pasted at 15-60 % of a 320 px frame: 128 px keeps them sharp enough and small in memory.
CLUTTER_PIXELS = 128
# Items per embedding batch (and per unit of thread-pool work).
CHUNK = 32
# Hits per calibration view that become examples, as tools/fit_calibration.py takes a query's top 10.
CALIBRATION_TOP = 10
# Every tenth item's localisation view measures the learned map instead of fitting it.
HELD_OUT_EVERY = 10
# A box "finds" the product when it overlaps the true box this much (the usual detection criterion).
FOUND_OVERLAP = 0.5
# Random streams of the localisation views, apart from the whitening's rounds 0..views.
LOCALISATION_STREAM = 1000


class AdaptationError(ValueError):
    """The catalog cannot be adapted to (too small, unreadable images); the message says which."""


@dataclass(frozen=True)
class AdaptOptions:
    # 6 fitting views per image: judge R@1 0.682 -> 0.701 and dev 0.903 -> 0.906 over 3, ~1 minute more
    # per 1,500 images (docs/quality.md).
    views: int = 6
    dimension: int = 512
    shrinkage: float = 0.5
    image_size: int = 256
    resize_mode: str = "crop"
    seed: int = 0
    workers: int = 2
    learned_localisation: bool = False


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
    # The learned localisation map (None: not asked for, or not learnable: `localisation_note` says why),
    # and the share of held-out views whose product the first pass's box finds, before/after it.
    objectness: loc.Objectness | None = None
    localisation_found: tuple[float, float] = (0.0, 0.0)
    localisation_note: str = ""


Progress = Callable[[str, int], Callable[[int], None]]


def _no_progress(_: str, __: int) -> Callable[[int], None]:
    return lambda _n: None


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class EmbeddedCatalog:
    """The base model's vectors of the catalog shots and of their synthetic views (passes 1 and 2)."""

    kept: list[tuple[str, Path]]  # the images that could be read, in order
    index: Floats  # (items, D): the clean shots
    views: NDArray[np.float32]  # (rounds, items, D): rounds 0..views-1 fit, the last one calibrates
    clutter: list[Image.Image]
    skipped: list[str]
    seconds: dict[str, float]


def adapt(
    images: Sequence[tuple[str, Path]], base: BaseModel, options: AdaptOptions, progress: Progress = _no_progress
) -> Adaptation:
    """Fit an adaptation to the catalog shots `images` ((product id, path), one per item)."""
    embedded = embed_catalog(images, base, options, progress)
    seconds = embedded.seconds
    started = time.perf_counter()
    adaptation = fit_adaptation(embedded, options)
    seconds["fit"] = time.perf_counter() - started
    adaptation.seconds = seconds
    if options.learned_localisation:
        started = time.perf_counter()
        adaptation.objectness, adaptation.localisation_found, adaptation.localisation_note = _learn_localisation(
            embedded.kept, embedded.clutter, base, framing(options.image_size, options.resize_mode), options, progress
        )
        seconds["localisation"] = time.perf_counter() - started
    return adaptation


def clutter_cutout(shot: Image.Image) -> Image.Image:
    """A catalog shot's object as clutter for other items' synthetic views (small: many are kept)."""
    piece = cutout(shot)
    piece.thumbnail((CLUTTER_PIXELS, CLUTTER_PIXELS))
    return piece


def view_object(shot: Image.Image) -> Image.Image:
    """A catalog shot's object, cut out, as synthetic views paste it."""
    obj = cutout(shot)
    obj.thumbnail((256, 256))
    return obj


def framed_view(obj: Image.Image, rng: np.random.Generator, clutter: Sequence[Image.Image], frames: Framing) -> Pixels:
    """One synthetic photo of `obj`, framed as the embedder frames a localised query."""
    view = make_view(obj, rng, clutter)
    return frames.box(frames.decode_photo(view.jpeg), query_crop(view, rng))


def embed_catalog(
    images: Sequence[tuple[str, Path]], base: BaseModel, options: AdaptOptions, progress: Progress = _no_progress
) -> EmbeddedCatalog:
    """Passes 1 and 2: every readable shot and its `views` + 1 synthetic views, embedded by the base model."""
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
        return framed, clutter_cutout(shot)

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
        obj = view_object(Image.open(path).convert("RGB"))
        out = []
        for round_ in range(rounds):
            # One generator per (seed, round, item): the same views whatever the thread scheduling.
            rng = np.random.default_rng([options.seed, round_, position])
            out.append(framed_view(obj, rng, clutter, frames))
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
    return EmbeddedCatalog(kept, index, view_vectors, clutter, skipped, seconds)


def fit_adaptation(embedded: EmbeddedCatalog, options: AdaptOptions) -> Adaptation:
    """The whitening from the fitting rounds, the calibration from the last round scored as searches score."""
    index, view_vectors, items = embedded.index, embedded.views, len(embedded.kept)
    fitting = view_vectors.shape[0] - 1
    fit_views = view_vectors[:fitting].reshape(-1, index.shape[1])
    fit_items = np.tile(np.arange(items), fitting)
    whitening = fit_learned_whitening(index, fit_views, fit_items, options.dimension, options.shrinkage)

    held = view_vectors[fitting]
    before = float(np.mean(np.argmax(held @ index.T, axis=1) == np.arange(items)))
    scores = whitening.apply(held) @ whitening.apply(index).T
    after = float(np.mean(np.argmax(scores, axis=1) == np.arange(items)))
    top = np.argsort(-scores, axis=1)[:, :CALIBRATION_TOP]
    example_scores = np.take_along_axis(scores, top, axis=1).ravel()
    labels = (top == np.arange(items)[:, None]).ravel().astype(np.float64)
    calibration = ScoreCalibration.fit(example_scores, labels)
    return Adaptation(
        whitening=whitening,
        calibration=calibration,
        items=items,
        views=int(fit_views.shape[0]),
        synthetic_recall_at_1=(before, after),
        calibration_log_loss=calibration.log_loss(example_scores, labels),
        skipped=embedded.skipped,
        localisation_note="not asked for (--learned-localisation)",
    )


@dataclass(frozen=True)
class _LocalisationView:
    pixels: Pixels  # the whole photo as the first pass frames it
    width: int
    height: int
    box: tuple[float, float, float, float]  # the product's, in pixels


def _learn_localisation(
    kept: Sequence[tuple[str, Path]],
    clutter: Sequence[Image.Image],
    base: BaseModel,
    frames: Framing,
    options: AdaptOptions,
    progress: Progress,
) -> tuple[loc.Objectness | None, tuple[float, float], str]:
    """Fit the localisation map on one synthetic view per item; measure it on every tenth item's."""

    def view_of(position: int) -> _LocalisationView:
        _, path = kept[position]
        obj = view_object(Image.open(path).convert("RGB"))
        rng = np.random.default_rng([options.seed, LOCALISATION_STREAM, position])
        view = make_view(obj, rng, clutter, loc.EXTENT)
        return _LocalisationView(frames.whole_photo(frames.decode_photo(view.jpeg)), view.width, view.height, view.box)

    with tempfile.TemporaryDirectory(prefix="imagesearch-adapt-") as scratch:
        tapped = Path(scratch) / "tapped.onnx"
        taps = loc.write_tapped(base.path, tapped)
        model = BaseModel(tapped)
        cells: list[Floats] = []
        labels: list[NDArray[np.bool_]] = []
        held: list[tuple[_LocalisationView, Floats, Floats]] = []  # view, its SALIENCY, its cell features
        tick = progress("localisation views", len(kept))
        with ThreadPoolExecutor(options.workers) as pool:
            for start in range(0, len(kept), CHUNK):
                positions = range(start, min(start + CHUNK, len(kept)))
                views = list(pool.map(view_of, positions))
                _, saliency, features, mid = model.run(
                    np.stack([v.pixels for v in views]), SALIENCY, taps.features, taps.mid
                )
                per_cell = loc.cell_features(features, mid)
                for position, view, maps, features_of in zip(positions, views, saliency, per_cell):
                    if position % HELD_OUT_EVERY == 0:
                        held.append((view, maps, features_of))
                        continue
                    on, inside = loc.cell_labels(view.width, view.height, view.box, *features_of.shape[:2])
                    chosen = np.flatnonzero(inside.ravel())
                    rng = np.random.default_rng([options.seed, LOCALISATION_STREAM + 1, position])
                    chosen = rng.permutation(chosen)[: loc.CELLS_PER_VIEW]
                    cells.append(features_of.reshape(-1, features_of.shape[-1])[chosen])
                    labels.append(on.ravel()[chosen])
                tick(len(positions))
    if not cells:
        return None, (0.0, 0.0), f"too few items ({len(kept)}) to learn a localisation map"
    try:
        fitted_cells, fitted_labels = np.concatenate(cells), np.concatenate(labels)
        cells.clear()  # the chunks are copied into one matrix: drop them before the fit copies it once more
        objectness = loc.fit_objectness(fitted_cells, fitted_labels, channels=features.shape[1])
    except ValueError as err:
        return None, (0.0, 0.0), f"not learned: {err}"
    found = np.zeros((len(held), 2))
    for k, (view, maps, features_of) in enumerate(held):
        truth = relative_box(view.box, view.width, view.height)
        for rule, level_map in enumerate((maps, maps * objectness.probability(features_of))):
            found[k, rule] = loc.box_overlap(subject_box(level_map, view.width, view.height), truth) >= FOUND_OVERLAP
    before, after = found.mean(axis=0) if len(held) else (0.0, 0.0)
    return objectness, (float(before), float(after)), f"fitted on {len(fitted_labels)} cells"
