"""Colour, on the small resized image: ICC profiles to sRGB, resamplable modes, transparency onto white.

Embedded ICC profiles (CMYK print profiles, Display P3) are converted with LittleCMS (a damaged
profile is ignored); 16-bit grey is scaled (x/257), not clipped; 1-bit, palette and grey become
RGB; anything transparent is composited onto white, since catalog shots are on white.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
from collections import OrderedDict

import numpy as np
from PIL import Image, ImageCms

log = logging.getLogger(__name__)

WHITE = (255, 255, 255)


# Colour management: per-thread caches of lcms transforms, keyed by the embedded profile.
_cms_local = threading.local()
_CMS_CACHE_SIZE = 16


@functools.lru_cache(maxsize=1)
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert an image with an embedded ICC profile to sRGB (CMYK print profiles, Display P3 phones).

    A damaged or unsuitable profile is ignored (naive conversion follows): the
    pixels are still usable and metadata problems should not reject uploads.
    """
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK"):
        return im
    out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
    cache: OrderedDict[tuple[bytes, str], ImageCms.ImageCmsTransform | None] | None = getattr(_cms_local, "cache", None)
    if cache is None:
        cache = _cms_local.cache = OrderedDict()
    key = (icc, im.mode)
    if key not in cache:
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            cache[key] = ImageCms.buildTransform(profile, _srgb_profile(), im.mode, out_mode)
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as err:
            log.debug("ignoring unusable ICC profile: %s", err)
            cache[key] = None
        while len(cache) > _CMS_CACHE_SIZE:
            cache.popitem(last=False)
    transform = cache[key]
    cache.move_to_end(key)
    if transform is None:
        return im
    try:
        return ImageCms.applyTransform(im, transform) or im
    except (ImageCms.PyCMSError, ValueError) as err:
        log.debug("ICC transform failed, using naive conversion: %s", err)
        return im


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_RESAMPLABLE = ("RGB", "RGBA", "CMYK", "L")


# 16-bit grey to 8: x/257, rounded, as a table (one byte out per sample, no wide temporaries).
_SIXTEEN_TO_EIGHT = ((np.arange(65536, dtype=np.uint32) + 128) // 257).astype(np.uint8)
_BLOCK_PIXELS = 1 << 20  # converted a block of rows at a time: numpy's indexing temporaries stay small


def _sixteen_bit_to_l(im: Image.Image) -> Image.Image:
    """Map 0..65535 onto 0..255 (x/257, rounded). Pillow's convert("L") would instead clip every
    value above 255 to white. Memory: the samples as an array (2 or 4 bytes a pixel, "I" is int32)
    and the 8-bit result, never a 64-bit copy of a 40-megapixel image."""
    samples = np.asarray(im)
    out = np.empty(samples.shape, dtype=np.uint8)
    rows = max(1, _BLOCK_PIXELS // max(1, samples.shape[1]))
    for start in range(0, samples.shape[0], rows):
        block = samples[start : start + rows]
        if block.dtype.itemsize > 2:
            block = np.clip(block, 0, 65535)
        out[start : start + rows] = _SIXTEEN_TO_EIGHT[block]
    return Image.fromarray(out, "L")


def resample_mode(im: Image.Image) -> Image.Image:
    """A mode Pillow resamples properly (P and 1 would fall back to nearest neighbour).

    Colour management and flattening wait until after the resize, where they
    touch ~50k pixels instead of millions. Transparency (alpha, or a tRNS colour
    key on P/L/RGB) becomes RGBA; Pillow resizes RGBA with premultiplied alpha.
    """
    if im.mode in _SIXTEEN_BIT:
        return _sixteen_bit_to_l(im)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        return im if im.mode == "RGBA" else im.convert("RGBA")
    if im.mode in _RESAMPLABLE:
        return im
    return im.convert("L" if im.mode == "1" else "RGB")


def display_colours(im: Image.Image, icc: bytes | None) -> Image.Image:
    """sRGB, as RGB (or RGBA, still to be flattened)."""
    im = _to_srgb(im, icc)
    # CMYK left here had no usable profile: Pillow's naive conversion (Adobe inversion
    # was already undone by the JPEG decoder's CMYK;I rawmode).
    return im if im.mode in ("RGB", "RGBA") else im.convert("RGB")


def flatten(im: Image.Image) -> Image.Image:
    """Composite onto white: catalog shots are on white, so transparent means white."""
    if im.mode != "RGBA":
        return im
    background = Image.new("RGBA", im.size, (*WHITE, 255))
    return Image.alpha_composite(background, im).convert("RGB")
