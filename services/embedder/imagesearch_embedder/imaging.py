"""Validation and decoding of uploaded images. Pure: no gRPC, no Triton, no globals changed.

Order of work, cheapest and most defensive first:

1. byte cap and an allow-list of formats sniffed from magic bytes (JPEG, PNG, WebP);
2. the declared width/height read straight from the file header by our own tiny
   parsers, so a decompression bomb (a 50,000 x 50,000 PNG is a few hundred bytes)
   is rejected in microseconds, before Pillow allocates anything;
3. Pillow opens the header (lazy) and we compute, for JPEG, a DCT "draft" scale
   that still leaves the region of interest at least model-size on its shorter
   side, so libjpeg decodes 1/2, 1/4 or 1/8 of the pixels;
4. decode, EXIF orientation, region crop, resize and flattening onto white
   (a catalog shot may instead be trimmed to its object's bounding box, `object_box`).

Every rejection is an `ImageRejected` with a reason mirroring
`imagesearch.v1.ImageErrorReason` and a message a client developer can act on.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import io
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from imagesearch.common.errors import InvalidArgument
from imagesearch.common.types import Region

log = logging.getLogger(__name__)

WHITE = (255, 255, 255)
# Bicubic on the final resize; the draft/reduce steps before it are box filters.
RESAMPLE = Image.Resampling.BICUBIC
# reduce() by an integer factor first while the image is more than this many times
# the target; 2.0 is Pillow's thumbnail() default and visually indistinguishable here.
REDUCING_GAP = 2.0


class ImageErrorReason(enum.IntEnum):
    """Mirrors imagesearch.v1.ImageErrorReason (same numbers) without importing protobuf."""

    UNSPECIFIED = 0
    EMPTY = 1
    TOO_LARGE = 2
    UNSUPPORTED_FORMAT = 3
    BAD_DIMENSIONS = 4
    CORRUPT = 5
    BAD_REGION = 6


class ImageRejected(Exception):
    """One image cannot be embedded; the rest of its batch is unaffected."""

    def __init__(self, reason: ImageErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"ImageRejected({self.reason.name}, {self.message!r})"


class ImageFormat(enum.Enum):
    JPEG = "JPEG"
    PNG = "PNG"
    WEBP = "WEBP"  # the name Pillow uses


class ResizeMode(enum.StrEnum):
    CROP = "crop"  # shorter side to the model size, then centre crop
    PAD = "pad"  # whole region fits, letterboxed on white


ACCEPTED = "JPEG, PNG, WebP"

# Formats we recognise only to say what was sent instead; never decoded.
_KNOWN_UNSUPPORTED: tuple[tuple[int, bytes, str], ...] = (
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (0, b"BM", "BMP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"%PDF", "PDF"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000"),
    (0, b"\xff\x0a", "JPEG XL"),
    (0, b"<svg", "SVG"),
    (0, b"<?xml", "SVG/XML"),
)
_HEIF_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, before any pixel is decoded."""

    format: ImageFormat
    width: int
    height: int


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int


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


# --------------------------------------------------------------------------- sniffing


def sniff_format(data: bytes) -> ImageFormat:
    """The format from the magic bytes; the allow-list is enforced here."""
    if data[:3] == b"\xff\xd8\xff":
        return ImageFormat.JPEG
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ImageFormat.PNG
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageFormat.WEBP
    raise ImageRejected(ImageErrorReason.UNSUPPORTED_FORMAT, _unsupported_message(data))


def _unsupported_message(data: bytes) -> str:
    name = None
    for offset, magic, fmt in _KNOWN_UNSUPPORTED:
        if data[offset : offset + len(magic)] == magic:
            name = fmt
            break
    if name is None and data[4:8] == b"ftyp":
        name = _HEIF_BRANDS.get(data[8:12])
    if name is None and data.lstrip()[:1] == b"<":
        name = "SVG/XML/HTML"
    what = f"{name} is not accepted" if name else "unsupported image format (unrecognised leading bytes)"
    return f"{what}; accepted: {ACCEPTED}"


# --------------------------------------------------------------------------- header dimensions


def _truncated_header(fmt: ImageFormat) -> ImageRejected:
    return ImageRejected(
        ImageErrorReason.CORRUPT, f"image data is truncated or corrupt: the {fmt.value} header is incomplete"
    )


# JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic); not DHT (C4), JPG (C8), DAC (CC).
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_size(data: bytes) -> tuple[int, int]:
    n = len(data)
    i = 2  # after SOI
    while True:
        # Like libjpeg, tolerate garbage between segments: skip to the next 0xFF.
        i = data.find(b"\xff", i)
        if i < 0:
            raise _truncated_header(ImageFormat.JPEG)
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            raise _truncated_header(ImageFormat.JPEG)
        marker = data[i]
        i += 1
        if marker in (0x00, 0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            continue  # stuffed byte or a marker without a length
        if marker in (0xD9, 0xDA):
            raise ImageRejected(
                ImageErrorReason.CORRUPT,
                "image data is truncated or corrupt: JPEG has no frame header before its image data",
            )
        if i + 2 > n:
            raise _truncated_header(ImageFormat.JPEG)
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2:
            raise ImageRejected(
                ImageErrorReason.CORRUPT, f"image data is truncated or corrupt: JPEG segment length {length}"
            )
        if marker in _JPEG_SOF:
            if i + 7 > n:
                raise _truncated_header(ImageFormat.JPEG)
            height = int.from_bytes(data[i + 3 : i + 5], "big")
            width = int.from_bytes(data[i + 5 : i + 7], "big")
            return width, height
        i += length


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24:
        raise _truncated_header(ImageFormat.PNG)
    if data[12:16] != b"IHDR":
        raise ImageRejected(
            ImageErrorReason.CORRUPT, "image data is truncated or corrupt: PNG does not start with an IHDR chunk"
        )
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _webp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 30:
        raise _truncated_header(ImageFormat.WEBP)
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended: 24-bit canvas size minus one
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L":  # lossless: signature 0x2f, then 14-bit sizes minus one
        if data[20] != 0x2F:
            raise ImageRejected(
                ImageErrorReason.CORRUPT, "image data is truncated or corrupt: bad WebP lossless signature"
            )
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":  # lossy: 3-byte frame tag, start code, 14-bit sizes (+2 scale bits)
        if data[23:26] != b"\x9d\x01\x2a":
            raise ImageRejected(
                ImageErrorReason.CORRUPT, "image data is truncated or corrupt: bad WebP lossy start code"
            )
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    raise ImageRejected(ImageErrorReason.CORRUPT, f"image data is truncated or corrupt: unknown WebP chunk {chunk!r}")


_SIZE_READERS = {ImageFormat.JPEG: _jpeg_size, ImageFormat.PNG: _png_size, ImageFormat.WEBP: _webp_size}


def _count(n: int) -> str:
    """2500000000 -> '2.5e9' (short to read); exact digits when small or when rounding would hide the excess."""
    text = f"{n:.3g}"
    if n < 10**8 or "e" not in text or float(text) != n:
        return str(n)
    mantissa, exponent = text.split("e")
    return f"{mantissa}e{int(exponent)}"


def check_dimensions(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageRejected(
            ImageErrorReason.BAD_DIMENSIONS,
            f"image declares a size of {width}x{height}; width and height must be at least 1",
        )
    pixels = width * height
    if pixels > max_pixels:
        raise ImageRejected(
            ImageErrorReason.BAD_DIMENSIONS,
            f"image is {width}x{height} = {_count(pixels)} pixels; the limit is {max_pixels}",
        )


def inspect_image(data: bytes, limits: Limits) -> ImageInfo:
    """Everything we can check without decoding: emptiness, byte cap, format, declared size."""
    if not data:
        raise ImageRejected(ImageErrorReason.EMPTY, "no image bytes were sent")
    if len(data) > limits.max_bytes:
        raise ImageRejected(
            ImageErrorReason.TOO_LARGE,
            f"image is {len(data)} bytes; the limit is {limits.max_bytes} bytes ({limits.max_bytes / 2**20:.1f} MiB)",
        )
    fmt = sniff_format(data)
    width, height = _SIZE_READERS[fmt](data)
    check_dimensions(width, height, limits.max_pixels)
    return ImageInfo(fmt, width, height)


# --------------------------------------------------------------------------- decoding


@contextmanager
def _pillow_errors(fmt: ImageFormat) -> Iterator[None]:
    """Data-dependent failures inside Pillow become CORRUPT (or BAD_DIMENSIONS) rejections.

    Wrapped only around Pillow's parsing/decoding of the upload, so it may be broad:
    hostile bytes can make a plugin raise almost anything, and none of it is our bug.
    """
    try:
        yield
    except ImageRejected:
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


def _region_or_full(region: Region | None) -> tuple[float, float, float, float]:
    if region is None:
        return 0.0, 0.0, 1.0, 1.0
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
    info: ImageInfo, orientation: int, rel: tuple[float, float, float, float], target: tuple[int, int], mode: ResizeMode
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


def _resample_mode(im: Image.Image) -> Image.Image:
    """A mode Pillow resamples properly (P and 1 would fall back to nearest neighbour).

    Colour management and flattening wait until after the resize, where they
    touch ~50k pixels instead of millions. Transparency (alpha, or a tRNS colour
    key on P/L/RGB) becomes RGBA; Pillow resizes RGBA with premultiplied alpha.
    """
    if im.mode in _SIXTEEN_BIT:
        # 16-bit grey: map 0..65535 onto 0..255 (x/257, rounded). Pillow's convert("L")
        # would instead clip every value above 255 to white.
        samples = np.asarray(im).astype(np.int64)
        return Image.fromarray(((np.clip(samples, 0, 65535) + 128) // 257).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        return im if im.mode == "RGBA" else im.convert("RGBA")
    if im.mode in _RESAMPLABLE:
        return im
    return im.convert("L" if im.mode == "1" else "RGB")


def _display_colours(im: Image.Image, icc: bytes | None) -> Image.Image:
    """sRGB, as RGB (or RGBA, still to be flattened)."""
    im = _to_srgb(im, icc)
    # CMYK left here had no usable profile: Pillow's naive conversion (Adobe inversion
    # was already undone by the JPEG decoder's CMYK;I rawmode).
    return im if im.mode in ("RGB", "RGBA") else im.convert("RGB")


def _flatten(im: Image.Image) -> Image.Image:
    """Composite onto white: catalog shots are on white, so transparent means white."""
    if im.mode != "RGBA":
        return im
    background = Image.new("RGBA", im.size, (*WHITE, 255))
    return Image.alpha_composite(background, im).convert("RGB")


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
    box: tuple[float, float, float, float],
    target: tuple[int, int],
    mode: ResizeMode,
    icc: bytes | None,
) -> Image.Image:
    target_h, target_w = target
    im = _resample_mode(im)
    if mode is ResizeMode.CROP:
        out = im.resize(
            (target_w, target_h), RESAMPLE, box=_crop_box(*box, target_w, target_h), reducing_gap=REDUCING_GAP
        )
        return _flatten(_display_colours(out, icc))
    roi_w, roi_h = box[2] - box[0], box[3] - box[1]
    scale = min(target_w / roi_w, target_h / roi_h)
    size = (max(1, min(target_w, round(roi_w * scale))), max(1, min(target_h, round(roi_h * scale))))
    fitted = _display_colours(im.resize(size, RESAMPLE, box=box, reducing_gap=REDUCING_GAP), icc)
    canvas = Image.new("RGB", (target_w, target_h), WHITE)
    offset = ((target_w - size[0]) // 2, (target_h - size[1]) // 2)
    canvas.paste(fitted, offset, mask=fitted if fitted.mode == "RGBA" else None)  # pasting with alpha = flattening
    return canvas


# --------------------------------------------------------------------------- object box

# A pixel belongs to the object when one of its channels differs from the background colour by
# more than this many levels: above JPEG noise on a plain background, below any visible object
# (docs/quality.md, "Index side"; research/exp_tight.py).
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
    im = _resample_mode(im)
    if im.mode == "RGBA":
        return _flatten(im)
    return im if im.mode in ("RGB", "L") else im.convert("RGB")


def _border_pixels(im: Image.Image) -> np.ndarray:
    """The first and last row and column, as an (n, bands) array (copies only the border)."""
    w, h = im.size
    strips = (im.crop((0, 0, w, 1)), im.crop((0, h - 1, w, h)), im.crop((0, 0, 1, h)), im.crop((w - 1, 0, w, h)))
    bands = len(im.getbands())
    return np.concatenate([np.asarray(strip).reshape(-1, bands) for strip in strips])


def object_box(im: Image.Image, tolerance: int = OBJECT_TOLERANCE) -> PixelBox | None:
    """The bounding box of the object of a product shot on a plain background; None for the whole image.

    Background = per-channel median of the border pixels; object pixels differ from it
    by more than `tolerance` levels in at least one channel; margin 0. None when no
    pixel stands out (a blank image) or the box is (nearly) the whole image (a photo
    that is not on a plain background, or an object filling the frame).
    """
    plain = _plain_pixels(im)
    background = np.median(_border_pixels(plain), axis=0)
    # Threshold every channel through a lookup table (C speed, no full-size array copies):
    # 255 where |level - background| > tolerance, then the box of pixels non-zero in any band.
    levels = np.arange(256)
    table = np.concatenate([np.where(np.abs(levels - colour) > tolerance, 255, 0) for colour in background])
    box = plain.point(table.tolist()).getbbox()
    if box is None:
        return None
    x0, y0, x1, y1 = box
    if x1 - x0 >= NEAR_WHOLE * plain.width and y1 - y0 >= NEAR_WHOLE * plain.height:
        return None
    return x0, y0, x1, y1


def relative_box(box: PixelBox | None, width: int, height: int) -> tuple[float, float, float, float]:
    """A pixel box as the relative (x0, y0, x1, y1) the Preprocessor frames; None -> the whole image."""
    if box is None:
        return 0.0, 0.0, 1.0, 1.0
    x0, y0, x1, y1 = box
    return x0 / width, y0 / height, x1 / width, y1 / height


@dataclass(frozen=True)
class Decoded:
    """A validated, decoded, upright image (and its ICC profile), ready to be framed."""

    image: Image.Image
    icc: bytes | None


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

    def __call__(self, data: bytes, region: Region | None = None) -> np.ndarray:
        decoded = self.decode(data, region)
        return self._finish(decoded.image, _region_or_full(region), decoded.icc)

    def frame(self, decoded: Decoded, rel: tuple[float, float, float, float], mode: ResizeMode) -> np.ndarray:
        """Another view of an already decoded image: the relative box `rel`, framed by `mode`."""
        return dataclasses.replace(self, mode=mode)._finish(decoded.image, rel, decoded.icc)

    def trimmed_to_object(self, data: bytes) -> np.ndarray:
        """A catalog shot trimmed to its object's bounding box (`object_box`), letterboxed on white.

        Decoded at full resolution, without JPEG draft scaling: the object may be a small
        part of the image, and the box is measured on the pixels the research measured it on.
        """
        decoded = dataclasses.replace(self, use_draft=False).decode(data)
        im = decoded.image
        return self.frame(decoded, relative_box(object_box(im), im.width, im.height), ResizeMode.PAD)

    def decode(self, data: bytes, region: Region | None = None) -> Decoded:
        """Validate and decode, upright; JPEG draft scaling keeps enough pixels for `region`."""
        check_pillow_is_strict()
        info = inspect_image(data, self.limits)
        rel = _region_or_full(region)
        with _pillow_errors(info.format):
            im = Image.open(io.BytesIO(data), formats=[info.format.value])
            # The header parsers and Pillow must agree; the pixel cap applies to what Pillow will allocate.
            check_dimensions(im.width, im.height, self.limits.max_pixels)
            if self.use_draft and info.format is ImageFormat.JPEG:
                # JPEG's EXIF is in APP1, parsed by open(): the orientation is known before decoding.
                request = draft_size(
                    ImageInfo(info.format, im.width, im.height), _orientation(im), rel, self.size, self.mode
                )
                if request is not None:
                    im.draft("RGB", request)
            im.load()
        icc = im.info.get("icc_profile")
        # Read after load(): PNG may store its eXIf chunk after the pixel data.
        orientation = _orientation(im)
        if orientation != 1:
            # The region is given in displayed coordinates, so rotate before cropping.
            im = ImageOps.exif_transpose(im)
        return Decoded(im, icc)

    def _finish(self, im: Image.Image, rel: tuple[float, float, float, float], icc: bytes | None) -> np.ndarray:
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
