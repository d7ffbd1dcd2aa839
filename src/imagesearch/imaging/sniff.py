"""Everything checked before a pixel is decoded: size in bytes, format, declared dimensions.

The format comes from the magic bytes (JPEG, PNG, WebP are accepted; GIF, HEIC, ... are named
in the refusal). The declared width and height are read straight from the header by our own
tiny parsers, so a decompression bomb (a 50,000 x 50,000 PNG is a few hundred bytes) is
refused in microseconds, before Pillow allocates anything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from imagesearch.imaging.errors import ImageErrorReason, ImageRejected

# The embedder's defaults (EMBEDDER_MAX_IMAGE_BYTES, EMBEDDER_MAX_PIXELS).
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
# Pillow's own decompression-bomb threshold (PIL.Image.MAX_IMAGE_PIXELS default): above it
# Image.open() warns, above twice it raises. Our explicit pixel cap must stay below it so our
# check is the one that fires, with our message; Pillow's global is never raised.
PILLOW_BOMB_PIXELS = 1024 * 1024 * 1024 // 4 // 3


class ImageFormat(enum.Enum):
    JPEG = "JPEG"
    PNG = "PNG"
    WEBP = "WEBP"  # the name Pillow uses


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
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


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
