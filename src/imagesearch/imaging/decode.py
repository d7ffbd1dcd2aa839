"""Decoding an upload that passed `sniff`: Pillow, JPEG draft scaling, EXIF orientation.

For JPEG a DCT-domain draft (`img.draft`) lets libjpeg decode at 1/2, 1/4 or 1/8 scale, chosen
so that the region of interest keeps at least the model's size where the resize needs it.
Truncated or corrupt data becomes a CORRUPT rejection; Pillow's LOAD_TRUNCATED_IMAGES must stay
off (`check_pillow_is_strict`).
"""

from __future__ import annotations

import enum
import io
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from imagesearch.common.errors import DomainError, InvalidArgument
from imagesearch.common.types import Region
from imagesearch.imaging.errors import ImageErrorReason, ImageRejected
from imagesearch.imaging.sniff import ImageFormat, ImageInfo, Limits, check_dimensions, inspect_image

RelativeBox = tuple[float, float, float, float]  # (x0, y0, x1, y1) in 0..1 of the displayed image
WHOLE: RelativeBox = (0.0, 0.0, 1.0, 1.0)


class ResizeMode(enum.StrEnum):
    CROP = "crop"  # shorter side to the model size, then centre crop
    PAD = "pad"  # whole region fits, letterboxed on white


def check_pillow_is_strict() -> None:
    """Refuse to run if something in the process told Pillow to accept truncated files.

    With LOAD_TRUNCATED_IMAGES a cut-off upload decodes "successfully" with its
    missing part grey, and we would index a wrong vector without a word.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process; the embedder refuses to "
            "decode because truncated uploads would be embedded silently. Find and remove the code that sets it."
        )


@contextmanager
def _pillow_errors(fmt: ImageFormat) -> Iterator[None]:
    """Data-dependent failures inside Pillow become CORRUPT (or BAD_DIMENSIONS) rejections.

    Wrapped only around Pillow's parsing/decoding of the upload, so it may be broad:
    hostile bytes can make a plugin raise almost anything, and none of it is our bug.
    """
    try:
        yield
    except (ImageRejected, DomainError):  # ours: a rejection, or the decode-memory budget's refusal
        raise
    except Image.DecompressionBombError as err:  # our own cap fires first; this is a second line
        raise ImageRejected(ImageErrorReason.BAD_DIMENSIONS, f"image is too large to decode: {err}") from None
    except UnidentifiedImageError:
        raise ImageRejected(
            ImageErrorReason.CORRUPT,
            f"image data is truncated or corrupt: it starts like {fmt.value} but cannot be parsed",
        ) from None
    except MemoryError:
        raise ImageRejected(
            ImageErrorReason.CORRUPT, "image data is truncated or corrupt: decoding ran out of memory"
        ) from None
    except Exception as err:  # noqa: BLE001 - see docstring
        detail = str(err) or type(err).__name__
        raise ImageRejected(ImageErrorReason.CORRUPT, f"image data is truncated or corrupt: {detail}") from None


def _orientation(im: Image.Image) -> int:
    """EXIF orientation 1..8; a damaged EXIF block is ignored, as browsers do."""
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - EXIF is metadata; the pixels may still be fine
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _swaps_axes(orientation: int) -> bool:
    return orientation in (5, 6, 7, 8)  # the transposes and 90-degree rotations


def relative_region(region: Region | None) -> RelativeBox:
    """The region as a relative box (the whole image when None); BAD_REGION when it is not a box in [0, 1]."""
    if region is None:
        return WHOLE
    try:
        region.validate()
    except InvalidArgument as err:
        raise ImageRejected(ImageErrorReason.BAD_REGION, err.message) from None
    return region.x_min, region.y_min, region.x_max, region.y_max


def _scale_needed(roi_w: float, roi_h: float, target_w: int, target_h: int, mode: ResizeMode) -> float:
    """Output pixels per input pixel of the final resize: cover the target (crop) or fit in it (pad)."""
    sx, sy = target_w / roi_w, target_h / roi_h
    return max(sx, sy) if mode is ResizeMode.CROP else min(sx, sy)


def draft_size(
    info: ImageInfo, orientation: int, rel: RelativeBox, target: tuple[int, int], mode: ResizeMode
) -> tuple[int, int] | None:
    """The smallest stored-orientation size JPEG may decode to without starving the resize.

    libjpeg scales by 1/2, 1/4 or 1/8 during the IDCT; Pillow picks the strongest
    scale that keeps the image at least this size, so the region of interest still
    has >= target pixels where the final resize needs them.
    """
    swapped = _swaps_axes(orientation)
    shown_w, shown_h = (info.height, info.width) if swapped else (info.width, info.height)
    x0, y0, x1, y1 = rel
    scale = _scale_needed((x1 - x0) * shown_w, (y1 - y0) * shown_h, target[1], target[0], mode)
    if scale >= 0.5:
        return None  # not even a 1/2 reduction is possible
    # The epsilon keeps float noise (224.00000000000003) from asking for one pixel more than needed.
    need_w, need_h = max(1, math.ceil(shown_w * scale - 1e-6)), max(1, math.ceil(shown_h * scale - 1e-6))
    return (need_h, need_w) if swapped else (need_w, need_h)


# Bytes per pixel of Pillow's own storage: 8-bit modes take one byte, 16-bit grey two, and every
# other mode (RGB included, stored as RGBX) four.
_ONE_BYTE_MODES = frozenset({"1", "L", "P"})


def _storage_bytes(mode: str) -> int:
    if mode in _ONE_BYTE_MODES:
        return 1
    return 2 if mode.startswith("I;16") else 4


def _conversion_bytes(mode: str, storage: int, transparent: bool) -> int:
    """Bytes per pixel that framing allocates at full size before its resize (imaging.colour)."""
    if mode.startswith("I"):
        return storage + 3  # the samples as an array, the 8-bit result and its image (+1 to spare)
    if mode in ("RGBA", "RGBa"):
        return 4  # Pillow resizes RGBA through a premultiplied copy
    if mode in ("LA", "PA", "La") or transparent:
        return 8  # converted to RGBA, then that premultiplied copy
    if mode in ("P", "1"):
        return 4  # converted to RGB (or L) for a proper resample
    return 0


# The resize's reduce() step first (at most a quarter of the pixels, four bytes each), and the
# codec's own buffers.
_REDUCED_BYTES = 1
_CODEC_BYTES = 1 << 20


def decode_cost(mode: str, width: int, height: int, transparent: bool = False) -> int:
    """An upper bound on the bytes that decoding and framing an image hold at their peak: the decoded
    pixels, plus the larger of an EXIF rotation's full-size copy and what the mode's conversion
    for resampling allocates, plus the resize's first reduction and the codec's buffers. Measured against peak RSS for each mode at 6300 x 6300 (see
    tests/imaging/test_decode_memory.py). The embedder reserves it from its decode-memory budget
    before Pillow allocates the pixels."""
    storage = _storage_bytes(mode)
    per_pixel = storage + max(storage, _conversion_bytes(mode, storage, transparent)) + _REDUCED_BYTES
    return width * height * per_pixel + _CODEC_BYTES


# Called with decode_cost() before the pixels are decoded; raises to refuse (the embedder's budget).
Reserve = Callable[[int], None]


@dataclass(frozen=True)
class Decoded:
    """A validated, decoded, upright image (and its ICC profile), ready to be framed."""

    image: Image.Image
    icc: bytes | None


def decode(
    data: bytes,
    limits: Limits,
    region: Region | None = None,
    draft_for: tuple[tuple[int, int], ResizeMode] | None = None,
    reserve: Reserve | None = None,
) -> Decoded:
    """Validate and decode, upright.

    With `draft_for` = (target (height, width), mode), JPEG draft scaling keeps enough pixels
    for `region` framed that way; without it the image is decoded at full resolution. `reserve`
    is called with `decode_cost` of what will be decoded (after draft scaling), before decoding.
    """
    check_pillow_is_strict()
    info = inspect_image(data, limits)
    rel = relative_region(region)
    with _pillow_errors(info.format):
        im: Image.Image = Image.open(io.BytesIO(data), formats=[info.format.value])
        # The header parsers and Pillow must agree; the pixel cap applies to what Pillow will allocate.
        check_dimensions(im.width, im.height, limits.max_pixels)
        if draft_for is not None and info.format is ImageFormat.JPEG:
            # JPEG's EXIF is in APP1, parsed by open(): the orientation is known before decoding.
            target, mode = draft_for
            request = draft_size(ImageInfo(info.format, im.width, im.height), _orientation(im), rel, target, mode)
            if request is not None:
                im.draft("RGB", request)
        if reserve is not None:
            reserve(decode_cost(im.mode, im.width, im.height, "transparency" in im.info))
        im.load()
    icc = im.info.get("icc_profile")
    # Read after load(): PNG may store its eXIf chunk after the pixel data.
    orientation = _orientation(im)
    if orientation != 1:
        # The region is given in displayed coordinates, so rotate before cropping.
        im = ImageOps.exif_transpose(im)
    return Decoded(im, icc)
