"""Subject localisation: where in a shopper's photo is the product?

The model's last feature map concentrates its activation on the object (the
SALIENCY output is its channel sum). Like Google's and Alibaba's product
search, we crop the photo to that subject before matching: catalog images are
product shots, so the crop looks much more like them than the busy scene does.

Recipe (measured on the dev set, docs/quality.md): the photo letterboxed on
white at 224 px (EMBEDDER_LOCALIZE_SIZE); its 14 x 14 SALIENCY map (the model's coarse "what" map
times its stride-16 "where" map) upsampled x4, thresholded at mean + 1 std
over the photo area; the bounding box of the largest 4-connected component,
not expanded (expanding by 10-30 % measured worse). numpy, Pillow and scipy's
labelling; no model here.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage

from imagesearch.common.types import Floats
from imagesearch.imaging.decode import WHOLE, RelativeBox

THRESHOLD_STDS = 1.0
EXPAND = 0.0
UPSAMPLE = 4


def _largest_component(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The largest 4-connected True region of `mask` (the first in raster order on a tie)."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros(mask.shape, bool)
    sizes = np.bincount(labels.ravel())[1:]
    return np.asarray(labels == int(np.argmax(sizes)) + 1)


def photo_grid(
    saliency: Floats, width: int, height: int
) -> tuple[NDArray[np.float32], tuple[float, float, float, float]]:
    """The map upsampled UPSAMPLE times, and where the `width` x `height` photo lies inside it
    (left, top, photo width, photo height, in grid cells): it was letterboxed into the model's input."""
    rows, cols = saliency.shape
    grid_h, grid_w = rows * UPSAMPLE, cols * UPSAMPLE
    fine = np.asarray(
        Image.fromarray(saliency.astype(np.float32), mode="F").resize((grid_w, grid_h), Image.Resampling.BILINEAR)
    )
    scale = min(grid_w / width, grid_h / height)
    photo_w, photo_h = width * scale, height * scale
    return fine, ((grid_w - photo_w) / 2, (grid_h - photo_h) / 2, photo_w, photo_h)


def subject_box(saliency: Floats, width: int, height: int, level: float | None = None) -> RelativeBox:
    """Relative (x0, y0, x1, y1) box of the subject in a `width` x `height` photo.

    `saliency` is the map of the photo letterboxed (centred, on white) into the
    model's square input. The subject is the largest region of cells above `level`;
    None is the product's rule, mean + THRESHOLD_STDS std over the photo (another level
    serves experiments on other maps). Returns the whole photo when nothing stands out.
    """
    fine, (left, top, photo_w, photo_h) = photo_grid(saliency, width, height)
    inside = np.zeros(fine.shape, bool)
    inside[int(np.ceil(top)) : int(top + photo_h), int(np.ceil(left)) : int(left + photo_w)] = True
    values = fine[inside]
    if values.size == 0:
        return WHOLE
    threshold = values.mean() + THRESHOLD_STDS * values.std() if level is None else level
    mask = inside & (fine > threshold)
    if not mask.any():
        return WHOLE
    ys, xs = np.nonzero(_largest_component(mask))
    x0, x1 = (xs.min() - left) / photo_w, (xs.max() + 1 - left) / photo_w
    y0, y1 = (ys.min() - top) / photo_h, (ys.max() + 1 - top) / photo_h
    bw, bh = x1 - x0, y1 - y0
    return (
        float(max(0.0, x0 - EXPAND * bw)),
        float(max(0.0, y0 - EXPAND * bh)),
        float(min(1.0, x1 + EXPAND * bw)),
        float(min(1.0, y1 + EXPAND * bh)),
    )


def subject_box_in(saliency: Floats, width: int, height: int, part: RelativeBox) -> RelativeBox:
    """`subject_box` of the map of `part` of a `width` x `height` photo (the part letterboxed
    alone: a zoomed look), in the whole photo's relative coordinates."""
    x0, y0, x1, y1 = part
    part_w, part_h = (x1 - x0) * width, (y1 - y0) * height
    bx0, by0, bx1, by1 = subject_box(saliency, max(1, round(part_w)), max(1, round(part_h)))
    return (x0 + bx0 * (x1 - x0), y0 + by0 * (y1 - y0), x0 + bx1 * (x1 - x0), y0 + by1 * (y1 - y0))
