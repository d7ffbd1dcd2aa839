"""The object of a catalog shot on a plain background: its mask, its bounding box, its cut-out.

Catalog shots show the product on a plain background; a pixel is the object's when one of its
channels differs from the border's median colour by more than a tolerance. The embedder trims
catalog images to the box (so they look like the tight crops a shopper's query gets), and
`imagesearch adapt` cuts objects out to paste them onto synthetic scenes.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageChops, ImageFilter

from imagesearch.imaging.colour import flatten, resample_mode
from imagesearch.imaging.decode import WHOLE, RelativeBox

# A pixel belongs to the object when one of its channels differs from the background colour by
# more than this many levels: above JPEG noise on a plain background, below any visible object
# (docs/quality.md, "Index side").
OBJECT_TOLERANCE = 14
# A box covering at least this share of both sides is "the whole image": trimming it would change
# the framing by a couple of model pixels at most, so the image is kept as it is.
NEAR_WHOLE = 0.99

PixelBox = tuple[int, int, int, int]  # (x0, y0, x1, y1), x1/y1 exclusive


def _plain_pixels(im: Image.Image) -> Image.Image:
    """The image as RGB or L, transparency flattened onto white as it will be framed.

    No colour management: the box compares pixels with the border's own colour, and
    an ICC conversion moves both alike.
    """
    im = resample_mode(im)
    if im.mode == "RGBA":
        return flatten(im)
    return im if im.mode in ("RGB", "L") else im.convert("RGB")


def _border_pixels(im: Image.Image) -> NDArray[Any]:
    """The first and last row and column, as an (n, bands) array (copies only the border)."""
    w, h = im.size
    strips = (im.crop((0, 0, w, 1)), im.crop((0, h - 1, w, h)), im.crop((0, 0, 1, h)), im.crop((w - 1, 0, w, h)))
    bands = len(im.getbands())
    return np.concatenate([np.asarray(strip).reshape(-1, bands) for strip in strips])


def _marked(im: Image.Image, tolerance: int) -> Image.Image:
    """Per band, 255 where the level differs from the border's median colour by more than `tolerance`.

    A lookup table per band: C speed, no full-size array copies.
    """
    background = np.median(_border_pixels(im), axis=0)
    levels = np.arange(256)
    table = np.concatenate([np.where(np.abs(levels - colour) > tolerance, 255, 0) for colour in background])
    return im.point(table.tolist())


def object_mask(im: Image.Image, tolerance: int = OBJECT_TOLERANCE) -> Image.Image:
    """An L mask of the object of a product shot (RGB or L): 255 where any channel stands out."""
    marked = _marked(im, tolerance)
    return marked if marked.mode == "L" else functools.reduce(ImageChops.lighter, marked.split())


def object_box(im: Image.Image, tolerance: int = OBJECT_TOLERANCE) -> PixelBox | None:
    """The bounding box of the object of a product shot on a plain background; None for the whole image.

    Background = per-channel median of the border pixels; object pixels differ from it
    by more than `tolerance` levels in at least one channel; margin 0. None when no
    pixel stands out (a blank image) or the box is (nearly) the whole image (a photo
    that is not on a plain background, or an object filling the frame).
    """
    plain = _plain_pixels(im)
    box = _marked(plain, tolerance).getbbox()  # the box of pixels non-zero in any band
    if box is None:
        return None
    x0, y0, x1, y1 = box
    if x1 - x0 >= NEAR_WHOLE * plain.width and y1 - y0 >= NEAR_WHOLE * plain.height:
        return None
    return x0, y0, x1, y1


def cutout(shot: Image.Image, tolerance: int = OBJECT_TOLERANCE) -> Image.Image:
    """The object of a product shot as RGBA, cropped to it (for pasting onto other scenes).

    The mask is `object_mask` with pinholes closed and the edge softened, so pasted objects do
    not look cut out with scissors.
    """
    rgb = shot.convert("RGB")
    mask = object_mask(rgb, tolerance)
    mask = mask.filter(ImageFilter.MaxFilter(3)).filter(ImageFilter.MinFilter(3)).filter(ImageFilter.GaussianBlur(0.8))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(mask)
    return rgba.crop(mask.getbbox() or (0, 0, rgb.width, rgb.height))


def relative_box(box: tuple[float, float, float, float] | None, width: int, height: int) -> RelativeBox:
    """A pixel box as the relative (x0, y0, x1, y1) the Preprocessor frames; None -> the whole image."""
    if box is None:
        return WHOLE
    x0, y0, x1, y1 = box
    return x0 / width, y0 / height, x1 / width, y1 / height
