"""Framing: a decoded image (and a region of it) to the uint8 array the model takes.

`crop` trims the region to the model's aspect ratio around its centre; `pad` fits the whole
region and letterboxes it on white. Region and resize are one step (`Image.resize(box=...,
reducing_gap=2.0)`, bicubic), and colour work happens after it, on ~50k pixels instead of millions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imagesearch.common.types import Pixels, Region
from imagesearch.imaging.colour import WHITE, display_colours, flatten, resample_mode
from imagesearch.imaging.decode import Decoded, RelativeBox, Reserve, ResizeMode, decode, relative_region
from imagesearch.imaging.errors import ImageErrorReason, ImageRejected
from imagesearch.imaging.objects import object_box, relative_box
from imagesearch.imaging.sniff import Limits

# Bicubic on the final resize; the draft/reduce steps before it are box filters.
RESAMPLE = Image.Resampling.BICUBIC
# reduce() by an integer factor first while the image is more than this many times
# the target; 2.0 is Pillow's thumbnail() default and visually indistinguishable here.
REDUCING_GAP = 2.0


def _crop_box(
    x0: float, y0: float, x1: float, y1: float, target_w: int, target_h: int
) -> tuple[float, float, float, float]:
    """Trim the longer side of the box, centred, to the target's aspect ratio."""
    w, h = x1 - x0, y1 - y0
    aspect = target_w / target_h
    if w / h > aspect:
        cx, new_w = (x0 + x1) / 2, h * aspect
        return cx - new_w / 2, y0, cx + new_w / 2, y1
    cy, new_h = (y0 + y1) / 2, w / aspect
    return x0, cy - new_h / 2, x1, cy + new_h / 2


def _resize(
    im: Image.Image,
    box: tuple[float, float, float, float],  # in pixels
    target: tuple[int, int],
    mode: ResizeMode,
    icc: bytes | None,
) -> Image.Image:
    target_h, target_w = target
    im = resample_mode(im)
    if mode is ResizeMode.CROP:
        out = im.resize(
            (target_w, target_h), RESAMPLE, box=_crop_box(*box, target_w, target_h), reducing_gap=REDUCING_GAP
        )
        return flatten(display_colours(out, icc))
    roi_w, roi_h = box[2] - box[0], box[3] - box[1]
    scale = min(target_w / roi_w, target_h / roi_h)
    size = (max(1, min(target_w, round(roi_w * scale))), max(1, min(target_h, round(roi_h * scale))))
    fitted = display_colours(im.resize(size, RESAMPLE, box=box, reducing_gap=REDUCING_GAP), icc)
    canvas = Image.new("RGB", (target_w, target_h), WHITE)
    offset = ((target_w - size[0]) // 2, (target_h - size[1]) // 2)
    canvas.paste(fitted, offset, mask=fitted if fitted.mode == "RGBA" else None)  # pasting with alpha = flattening
    return canvas


@dataclass(frozen=True)
class Preprocessor:
    """Bytes (+ optional region) -> uint8 array of the model's input shape (H, W, 3).

    Thread-safe and stateless; call it from a thread pool (Pillow releases the GIL
    while decoding and resizing).
    """

    limits: Limits
    size: tuple[int, int]  # (height, width) of the model input
    mode: ResizeMode = ResizeMode.CROP
    use_draft: bool = True  # JPEG DCT-domain downscaling; off only to measure its effect

    def __call__(self, data: bytes, region: Region | None = None, reserve: Reserve | None = None) -> Pixels:
        decoded = self.decode(data, region, reserve)
        return self._finish(decoded.image, relative_region(region), decoded.icc)

    def frame(self, decoded: Decoded, rel: RelativeBox, mode: ResizeMode) -> Pixels:
        """Another view of an already decoded image: the relative box `rel`, framed by `mode`."""
        return dataclasses.replace(self, mode=mode)._finish(decoded.image, rel, decoded.icc)

    def trimmed_to_object(self, data: bytes, reserve: Reserve | None = None) -> Pixels:
        """A catalog shot trimmed to its object's bounding box (`object_box`), letterboxed on white.

        Decoded at full resolution, without JPEG draft scaling: the object may be a small
        part of the image, and the box is measured on the pixels the research measured it on.
        """
        decoded = dataclasses.replace(self, use_draft=False).decode(data, reserve=reserve)
        im = decoded.image
        return self.frame(decoded, relative_box(object_box(im), im.width, im.height), ResizeMode.PAD)

    def decode(self, data: bytes, region: Region | None = None, reserve: Reserve | None = None) -> Decoded:
        """Validate and decode, upright; JPEG draft scaling keeps enough pixels for `region`."""
        return decode(data, self.limits, region, (self.size, self.mode) if self.use_draft else None, reserve)

    def _finish(self, im: Image.Image, rel: RelativeBox, icc: bytes | None) -> Pixels:
        x0, y0, x1, y1 = rel
        box = (x0 * im.width, y0 * im.height, x1 * im.width, y1 * im.height)
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            raise ImageRejected(
                ImageErrorReason.BAD_REGION,
                f"region {rel} covers {box[2] - box[0]:.2g}x{box[3] - box[1]:.2g} pixels of a "
                f"{im.width}x{im.height} image; it must cover at least 1 pixel each way",
            )
        out = _resize(im, box, self.size, self.mode, icc)
        array = np.asarray(out, dtype=np.uint8)
        assert array.shape == (*self.size, 3), array.shape  # our invariant, not the caller's fault
        return array
