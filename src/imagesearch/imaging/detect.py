"""Every object in a shopper's photo: the main one (what localisation crops to) and the others.

Two kinds of evidence, both free of extra model evaluations:

* the model's SALIENCY map of the photo (its first pass): the main object is the localisation
  box (imagesearch.imaging.localize.subject_box, unchanged, so search quality is what it was,
  except where that box joins several objects on a plain backdrop: then each gets its own);
  further objects are other peaks of the map, each grown to where the map stays above half of
  its peak;
* the photo's own pixels where its border is a plain colour (products laid side by side on a
  table, a collage, a catalog-style shot): the connected regions that differ from that colour.

Candidates that mostly repeat an earlier one, or are too small or nearly the whole photo, are
dropped; the rest are ranked by the share of the photo's saliency they hold. numpy, Pillow and scipy's
connected-region labelling (C: the decode threads keep the interpreter lock only briefly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageChops
from scipy import ndimage

from imagesearch.common.types import Floats
from imagesearch.imaging.decode import WHOLE, RelativeBox
from imagesearch.imaging.localize import photo_grid, subject_box

# The objects a search reports, the main one included (each further one costs its caller one
# model evaluation of its crop, in the same batch: docs/quality.md, "Objects").
MAX_OBJECTS = 3
# A further object must cover at least this share of the photo's area...
MIN_AREA = 0.02
# ... and at most this share of it is "not an object but the scene".
MAX_AREA = 0.8
# A candidate with more than this share of its area inside an object already kept repeats it.
MAX_OVERLAP = 0.5
# A localisation box holding this share of each of two objects on a plain backdrop joins them.
JOINED = 0.25
# A saliency peak below this share of the highest one is background texture, not an object.
MIN_PEAK = 0.35
# Each further saliency object: the cells above this share of its own peak.
PEAK_SHARE = 0.5
# A border is plain when this share of its pixels lies within BORDER_TOLERANCE of its median colour.
PLAIN_BORDER = 0.9
# Levels from the border colour that make a pixel an object's: above JPEG noise and a light-grey
# product backdrop (240-248 on white), below any visible object edge.
BORDER_TOLERANCE = 24
# The pixel evidence is read on a grid this many cells on its longer side.
PIXEL_GRID = 64


_MARK = [255 if level > BORDER_TOLERANCE else 0 for level in range(256)]  # a lookup table: C speed


@dataclass(frozen=True)
class FoundObject:
    box: RelativeBox  # of the displayed photo
    salience: float  # its share of the photo's saliency, in [0, 1]


def find_objects(photo: Image.Image, saliency: Floats, limit: int = MAX_OBJECTS) -> list[FoundObject]:
    """The objects in `photo` (upright, as displayed), the main one first; at least the main one."""
    width, height = photo.size
    grid, inside = photo_grid(saliency, width, height)

    def ranked(boxes: list[RelativeBox]) -> list[RelativeBox]:
        return sorted((b for b in boxes if MIN_AREA <= _area(b) <= MAX_AREA), key=lambda b: -_salience(grid, inside, b))

    main = subject_box(saliency, width, height)
    laid_out = _distinct(ranked(_plain_background_objects(photo)), [])
    if sum(_overlap(box, main) > JOINED for box in laid_out) >= 2:
        # The coarse map joined neighbours on a plain backdrop into one box: their pixels bound
        # each of them better.
        kept = laid_out
    elif main == WHOLE:
        kept = [main]
    else:
        kept = _distinct(ranked(laid_out + _saliency_objects(grid, inside)), [main])
    return [FoundObject(box, _salience(grid, inside, box)) for box in kept[:limit]]


def _distinct(candidates: list[RelativeBox], kept: list[RelativeBox]) -> list[RelativeBox]:
    """`kept`, then each candidate in turn that does not mostly repeat one already there."""
    kept = list(kept)
    for box in candidates:
        if not any(_overlap(box, other) > MAX_OVERLAP or _overlap(other, box) > MAX_OVERLAP for other in kept):
            kept.append(box)
    return kept


# ---- saliency


def _cells(inside: tuple[float, ...], shape: tuple[int, ...]) -> tuple[slice, slice]:
    left, top, photo_w, photo_h = inside
    return slice(int(np.ceil(top)), max(int(np.ceil(top)) + 1, int(top + photo_h))), slice(
        int(np.ceil(left)), max(int(np.ceil(left)) + 1, int(left + photo_w))
    )


def _salience(grid: NDArray[np.float32], inside: tuple[float, ...], box: RelativeBox) -> float:
    rows, cols = _cells(inside, grid.shape)
    photo = np.clip(grid[rows, cols], 0, None)
    total = float(photo.sum())
    if total <= 0:
        return 0.0
    h, w = photo.shape
    x0, y0, x1, y1 = box
    part = photo[
        int(y0 * h) : max(int(y0 * h) + 1, int(np.ceil(y1 * h))),
        int(x0 * w) : max(int(x0 * w) + 1, int(np.ceil(x1 * w))),
    ]
    return float(part.sum()) / total


def _saliency_objects(grid: NDArray[np.float32], inside: tuple[float, ...]) -> list[RelativeBox]:
    rows, cols = _cells(inside, grid.shape)
    photo = grid[rows, cols]
    if photo.size == 0 or float(photo.max()) <= 0:
        return []
    highest = float(photo.max())
    taken = np.zeros(photo.shape, bool)
    boxes: list[RelativeBox] = []
    # Peaks, highest first: each takes the cells around it above half its height.
    for flat in np.argsort(photo, axis=None)[::-1]:
        y, x = divmod(int(flat), photo.shape[1])
        peak = float(photo[y, x])
        if peak < MIN_PEAK * highest or len(boxes) >= 2 * MAX_OBJECTS:
            break
        if taken[y, x]:
            continue
        labels, _ = ndimage.label(photo > PEAK_SHARE * peak)
        region = labels == labels[y, x]
        taken |= region
        boxes.append(_box_of(region))
    return boxes


# ---- pixels on a plain background


def _plain_background_objects(photo: Image.Image) -> list[RelativeBox]:
    rgb = photo.convert("RGB")
    scale = PIXEL_GRID / max(rgb.size)
    small = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.int16)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    colour = np.median(border, axis=0)
    if np.mean(np.abs(border - colour).max(axis=1) <= BORDER_TOLERANCE) < PLAIN_BORDER:
        return []  # a scene, not a plain backdrop: the pixels say nothing about objects
    # Full resolution for the mask (thin outlines survive), then any marked pixel marks its cell;
    # all in Pillow's C loops.
    backdrop = Image.new("RGB", rgb.size, tuple(int(c) for c in colour))
    red, green, blue = ImageChops.difference(rgb, backdrop).split()
    marked = ImageChops.lighter(ImageChops.lighter(red, green), blue).point(_MARK)
    mask = np.asarray(marked.resize(small.size, Image.Resampling.BOX)) > 16
    labels, count = ndimage.label(mask)  # 4-connected
    return [_slices_box(found, mask.shape) for found in ndimage.find_objects(labels)[:count] if found is not None]


# ---- geometry


def _slices_box(found: tuple[slice, ...], shape: tuple[int, ...]) -> RelativeBox:
    ys, xs = found
    h, w = shape
    return (xs.start / w, ys.start / h, xs.stop / w, ys.stop / h)


def _box_of(region: NDArray[np.bool_]) -> RelativeBox:
    ys, xs = np.nonzero(region)
    h, w = region.shape
    return (float(xs.min() / w), float(ys.min() / h), float((xs.max() + 1) / w), float((ys.max() + 1) / h))


def _area(box: RelativeBox) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _overlap(box: RelativeBox, other: RelativeBox) -> float:
    """The share of `box`'s area inside `other`."""
    area = _area(box)
    if area <= 0:
        return 1.0
    inter = (max(box[0], other[0]), max(box[1], other[1]), min(box[2], other[2]), min(box[3], other[3]))
    return _area(inter) / area
