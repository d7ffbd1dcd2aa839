"""Unit tests of the embedder's image validation and decoding (no gRPC, no Triton).

Every image is generated in memory; hostile files are crafted byte by byte.
"""

from __future__ import annotations

import io
import os
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile

from imagesearch.common.types import ImageErrorReason, Region
from imagesearch.imaging.decode import ResizeMode, draft_size
from imagesearch.imaging.errors import ImageRejected
from imagesearch.imaging.frame import Preprocessor
from imagesearch.imaging.sniff import ImageFormat, ImageInfo, Limits, inspect_image
from imagesearch.v1 import common_pb2

SIZE = (224, 224)
LIMITS = Limits(max_bytes=10 * 1024 * 1024, max_pixels=40_000_000)
RED, BLUE, GREEN, WHITE = (220, 20, 20), (20, 20, 220), (20, 200, 20), (255, 255, 255)


@pytest.fixture
def pre() -> Preprocessor:
    return Preprocessor(limits=LIMITS, size=SIZE)


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def halves(size: tuple[int, int], left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    im = Image.new("RGB", size, right)
    im.paste(left, (0, 0, size[0] // 2, size[1]))
    return im


def assert_close(pixel: np.ndarray, colour: tuple[int, ...], tol: int = 12) -> None:
    assert np.all(np.abs(pixel.astype(int) - np.array(colour)) <= tol), f"{pixel.tolist()} is not ~{colour}"


def rejected(pre: Preprocessor, data: bytes, region: Region | None = None) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        pre(data, region)
    return info.value


# --------------------------------------------------------------------------- crafted files


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG with a valid IHDR (CRC included) declaring any size, and no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def jpeg_header_only(width: int, height: int) -> bytes:
    """SOI, APP0 and a baseline SOF0 declaring any size."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def webp_vp8x_header_only(width: int, height: int) -> bytes:
    payload = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


# --------------------------------------------------------------------------- accepted formats


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_accepted_formats_decode_to_model_input(pre: Preprocessor, fmt: str) -> None:
    data = encode(halves((320, 240), RED, BLUE), fmt, **({"quality": 95} if fmt != "PNG" else {}))
    out = pre(data)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert_close(out[112, 10], RED, tol=20)
    assert_close(out[112, 213], BLUE, tol=20)


def test_real_query_photo(pre: Preprocessor, dev_set) -> None:  # type: ignore[no-untyped-def]
    photo = sorted((dev_set / "queries").glob("*.jpg"))[0]
    out = pre(photo.read_bytes())
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8 and out.std() > 5


def test_reason_enum_mirrors_the_proto() -> None:
    proto = {name.removeprefix("IMAGE_ERROR_REASON_"): number for name, number in common_pb2.ImageErrorReason.items()}
    assert proto == {member.name: member.value for member in ImageErrorReason}


# --------------------------------------------------------------------------- modes -> RGB


def test_rgba_is_composited_on_white(pre: Preprocessor) -> None:
    im = Image.new("RGBA", (200, 200), (0, 0, 0, 0))  # transparent *black*: must come out white
    im.paste((*RED, 255), (0, 0, 100, 200))
    out = pre(encode(im, "PNG"))
    assert_close(out[112, 10], RED, tol=2)
    assert_close(out[112, 213], WHITE, tol=2)


def test_half_transparent_rgba_blends_with_white(pre: Preprocessor) -> None:
    out = pre(encode(Image.new("RGBA", (64, 64), (0, 0, 0, 128)), "PNG"))
    assert_close(out[50, 50], (127, 127, 127), tol=2)


def test_rgba_webp_is_composited_on_white(pre: Preprocessor) -> None:
    im = Image.new("RGBA", (100, 100), (0, 0, 255, 0))
    out = pre(encode(im, "WEBP", lossless=True))
    assert_close(out[50, 50], WHITE, tol=2)


def test_la_is_composited_on_white(pre: Preprocessor) -> None:
    im = Image.new("LA", (100, 100), (0, 0))
    im.paste((60, 255), (0, 0, 50, 100))
    out = pre(encode(im, "PNG"))
    assert_close(out[112, 10], (60, 60, 60), tol=2)
    assert_close(out[112, 213], WHITE, tol=2)


def test_palette_with_transparency_is_composited_on_white(pre: Preprocessor) -> None:
    im = Image.new("P", (100, 100), 0)
    im.putpalette([0, 0, 0, *RED] + [0] * (256 * 3 - 6))  # index 0 black (transparent), index 1 red
    im.paste(1, (0, 0, 50, 100))
    data = encode(im, "PNG", transparency=0)
    assert Image.open(io.BytesIO(data)).mode == "P"
    out = pre(data)
    assert_close(out[112, 10], RED, tol=2)
    assert_close(out[112, 213], WHITE, tol=2)


def test_rgb_png_with_colour_key_transparency(pre: Preprocessor) -> None:
    im = halves((100, 100), RED, (1, 2, 3))
    out = pre(encode(im, "PNG", transparency=(1, 2, 3)))
    assert_close(out[112, 213], WHITE, tol=2)


def test_grayscale_jpeg_gives_equal_channels(pre: Preprocessor) -> None:
    out = pre(encode(Image.new("L", (300, 300), 90), "JPEG"))
    assert_close(out[100, 100], (90, 90, 90), tol=2)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_16_bit_grayscale_png_is_scaled_not_clipped(pre: Preprocessor) -> None:
    # Pillow's convert("L") would clip 40000 to 255 (white); scaled it is 40000/257 = 156.
    data = encode(Image.fromarray(np.full((120, 160), 40000, dtype=np.uint16)), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    assert_close(pre(data)[100, 100], (156, 156, 156), tol=1)


def test_one_bit_png(pre: Preprocessor) -> None:
    im = Image.new("1", (100, 100), 1)
    im.paste(0, (0, 0, 50, 100))
    out = pre(encode(im, "PNG"))
    assert_close(out[112, 10], (0, 0, 0), tol=2)
    assert_close(out[112, 213], WHITE, tol=2)


def test_cmyk_jpeg_adobe_inverted(pre: Preprocessor) -> None:
    data = encode(halves((200, 200), RED, BLUE).convert("CMYK"), "JPEG", quality=95)
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == "CMYK" and "adobe" in opened.info  # libjpeg writes Adobe (inverted) CMYK
    out = pre(data)
    assert_close(out[112, 10], RED, tol=20)
    assert_close(out[112, 213], BLUE, tol=20)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_srgb_icc_profile_is_applied_as_identity(pre: Preprocessor, mode: str) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = halves((100, 100), RED, BLUE).convert(mode)
    out = pre(encode(im, "PNG", icc_profile=srgb))
    assert_close(out[112, 10], RED, tol=3)
    assert_close(out[112, 213], BLUE, tol=3)


def test_damaged_icc_profile_is_ignored(pre: Preprocessor) -> None:
    data = encode(Image.new("RGB", (100, 100), RED), "JPEG", quality=95, icc_profile=b"not a profile" * 10)
    assert_close(pre(data)[50, 50], RED, tol=6)


# --------------------------------------------------------------------------- orientation, region, resize


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(pre: Preprocessor, fmt: str) -> None:
    # Stored: left half red, right half blue. Orientation 6 = display rotated 90 degrees
    # clockwise, so the stored left edge becomes the displayed top: red on top, blue below.
    data = encode(halves((400, 200), RED, BLUE), fmt, exif=exif_with_orientation(6))
    out = pre(data)
    assert_close(out[10, 112], RED, tol=20)
    assert_close(out[213, 112], BLUE, tol=20)
    # Without the tag the same pixels would put red on the left.
    plain = pre(encode(halves((400, 200), RED, BLUE), fmt))
    assert_close(plain[112, 10], RED, tol=20)


def test_region_is_in_displayed_coordinates(pre: Preprocessor) -> None:
    data = encode(halves((400, 200), RED, BLUE), "JPEG", quality=95, exif=exif_with_orientation(6))
    top = pre(data, Region(0.0, 0.0, 1.0, 0.45))  # displayed top = stored left = red
    bottom = pre(data, Region(0.0, 0.55, 1.0, 1.0))
    assert_close(top.reshape(-1, 3).mean(0), RED, tol=10)
    assert_close(bottom.reshape(-1, 3).mean(0), BLUE, tol=10)


def test_region_crop_selects_a_quadrant(pre: Preprocessor) -> None:
    im = Image.new("RGB", (400, 400), WHITE)
    im.paste(RED, (0, 0, 200, 200))
    im.paste(GREEN, (200, 0, 400, 200))
    im.paste(BLUE, (0, 200, 200, 400))
    data = encode(im, "PNG")
    out = pre(data, Region(0.55, 0.05, 0.95, 0.45))
    assert_close(out.reshape(-1, 3).min(0), GREEN, tol=1)
    assert_close(out.reshape(-1, 3).max(0), GREEN, tol=1)


def test_crop_mode_centre_crops_and_pad_mode_letterboxes_on_white() -> None:
    # 400x100: a red band in the middle quarter of a blue image.
    im = Image.new("RGB", (400, 100), BLUE)
    im.paste(RED, (150, 0, 250, 100))
    data = encode(im, "PNG")
    crop = Preprocessor(LIMITS, SIZE, ResizeMode.CROP)(data)
    assert_close(crop[112, 112], RED, tol=2)  # centre 100x100 of the wide image: all red
    assert_close(crop[112, 5], RED, tol=2)
    pad = Preprocessor(LIMITS, SIZE, ResizeMode.PAD)(data)
    assert_close(pad[5, 112], WHITE, tol=1)  # letterbox bands above and below
    assert_close(pad[218, 112], WHITE, tol=1)
    assert_close(pad[112, 5], BLUE, tol=2)
    assert_close(pad[112, 112], RED, tol=2)


def test_non_square_model_input() -> None:
    out = Preprocessor(LIMITS, (160, 96))(encode(Image.new("RGB", (640, 480), RED), "JPEG"))
    assert out.shape == (160, 96, 3)


def test_tiny_image_is_upscaled(pre: Preprocessor) -> None:
    out = pre(encode(Image.new("RGB", (3, 2), GREEN), "PNG"))
    assert out.shape == (224, 224, 3)
    assert_close(out[100, 100], GREEN, tol=1)


def test_draft_keeps_the_region_at_model_size() -> None:
    info = ImageInfo(ImageFormat.JPEG, 4000, 3000)
    # Whole image, crop mode: shorter side 3000 -> 224 allows 1/8 (375 >= 224).
    assert draft_size(info, 1, (0, 0, 1, 1), SIZE, ResizeMode.CROP) == (299, 224)
    # A region 10 % wide is 400 px: no 1/2 reduction possible without starving it.
    assert draft_size(info, 1, (0.45, 0.45, 0.55, 0.55), SIZE, ResizeMode.CROP) is None
    # Rotated 90 degrees: computed on displayed axes, returned in stored axes.
    assert draft_size(info, 6, (0, 0, 1, 1), SIZE, ResizeMode.CROP) == (299, 224)
    assert draft_size(info, 6, (0, 0, 1, 0.5), SIZE, ResizeMode.CROP) == (448, 336)


def test_draft_decode_is_close_to_full_decode() -> None:
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).resize((2400, 1800), Image.BICUBIC)
    data = encode(base, "JPEG", quality=90)
    fast = Preprocessor(LIMITS, SIZE, use_draft=True)(data).astype(float)
    full = Preprocessor(LIMITS, SIZE, use_draft=False)(data).astype(float)
    assert np.abs(fast - full).mean() < 3.0


# --------------------------------------------------------------------------- rejections


def test_empty_bytes(pre: Preprocessor) -> None:
    err = rejected(pre, b"")
    assert err.reason is ImageErrorReason.EMPTY and "no image bytes" in err.message


def test_random_bytes(pre: Preprocessor) -> None:
    err = rejected(pre, np.random.default_rng(1).integers(1, 255, 4096, dtype=np.uint8).tobytes())
    assert err.reason is ImageErrorReason.UNSUPPORTED_FORMAT
    assert "accepted: JPEG, PNG, WebP" in err.message


@pytest.mark.parametrize("fmt,name", [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF")])
def test_other_formats_are_named_and_refused(pre: Preprocessor, fmt: str, name: str) -> None:
    err = rejected(pre, encode(Image.new("RGB", (20, 20), RED), fmt))
    assert err.reason is ImageErrorReason.UNSUPPORTED_FORMAT
    assert err.message == f"{name} is not accepted; accepted: JPEG, PNG, WebP"


def test_truncated_jpeg(pre: Preprocessor) -> None:
    rng = np.random.default_rng(2)
    data = encode(Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)), "JPEG")
    err = rejected(pre, data[: len(data) // 2])
    assert err.reason is ImageErrorReason.CORRUPT
    assert err.message.startswith("image data is truncated or corrupt: ") and "truncated" in err.message


def test_truncated_png_and_webp(pre: Preprocessor) -> None:
    rng = np.random.default_rng(3)
    noise = Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
    for fmt in ("PNG", "WEBP"):
        data = encode(noise, fmt)
        err = rejected(pre, data[: len(data) * 2 // 3])
        assert err.reason is ImageErrorReason.CORRUPT, fmt
        assert err.message.startswith("image data is truncated or corrupt"), err.message


def test_header_cut_short(pre: Preprocessor) -> None:
    err = rejected(pre, b"\xff\xd8\xff\xe0\x00")
    assert err.reason is ImageErrorReason.CORRUPT and "JPEG header is incomplete" in err.message


def test_corrupt_png_crc(pre: Preprocessor) -> None:
    data = bytearray(encode(Image.new("RGB", (50, 50), RED), "PNG"))
    data[29] ^= 0xFF  # inside the IHDR CRC
    err = rejected(pre, bytes(data))
    assert err.reason is ImageErrorReason.CORRUPT


def test_zero_width_png(pre: Preprocessor) -> None:
    data = png_header_only(0, 480)
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0]  # a well-formed chunk
    err = rejected(pre, data)
    assert err.reason is ImageErrorReason.BAD_DIMENSIONS
    assert err.message == "image declares a size of 0x480; width and height must be at least 1"


@pytest.mark.parametrize("craft", [png_header_only, jpeg_header_only, webp_vp8x_header_only])
def test_decompression_bomb_header_is_rejected_fast_without_allocating(pre: Preprocessor, craft) -> None:  # type: ignore[no-untyped-def]
    data = craft(50_000, 50_000)
    assert len(data) < 100
    tracemalloc.start()
    started = time.perf_counter()
    err = rejected(pre, data)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert err.reason is ImageErrorReason.BAD_DIMENSIONS
    assert err.message == "image is 50000x50000 = 2.5e9 pixels; the limit is 40000000"
    assert elapsed < 0.05 and peak < 1_000_000


def test_pixel_cap_just_over_the_limit_shows_exact_count() -> None:
    err = rejected(Preprocessor(Limits(LIMITS.max_bytes, 10_000), SIZE), png_header_only(101, 100))
    assert err.message == "image is 101x100 = 10100 pixels; the limit is 10000"


def test_bytes_over_the_cap() -> None:
    data = encode(Image.new("RGB", (64, 64), RED), "PNG")
    err = rejected(Preprocessor(Limits(max_bytes=100, max_pixels=LIMITS.max_pixels), SIZE), data)
    assert err.reason is ImageErrorReason.TOO_LARGE
    assert err.message.startswith(f"image is {len(data)} bytes; the limit is 100 bytes")


def test_cap_is_checked_before_anything_else() -> None:
    err = rejected(Preprocessor(Limits(max_bytes=10, max_pixels=LIMITS.max_pixels), SIZE), b"GIF89a" + bytes(100))
    assert err.reason is ImageErrorReason.TOO_LARGE


@pytest.mark.parametrize(
    "region,fragment",
    [
        (Region(0.5, 0.0, 0.5, 1.0), "x_min < x_max"),
        (Region(-0.1, 0.0, 0.5, 1.0), "must lie in [0, 1]"),
        (Region(0.0, 0.0, float("nan"), 1.0), "must lie in [0, 1]"),
        (Region(0.5, 0.5, 0.5001, 0.5001), "at least 1 pixel"),
    ],
)
def test_bad_regions(pre: Preprocessor, region: Region, fragment: str) -> None:
    err = rejected(pre, encode(Image.new("RGB", (300, 300), RED), "PNG"), region)
    assert err.reason is ImageErrorReason.BAD_REGION and fragment in err.message


def test_inspect_reads_dimensions_of_every_format() -> None:
    im = Image.new("RGB", (123, 45), RED)
    for fmt, params in (("JPEG", {}), ("PNG", {}), ("WEBP", {}), ("WEBP", {"lossless": True})):
        info = inspect_image(encode(im, fmt, **params), LIMITS)
        assert (info.width, info.height) == (123, 45), (fmt, params)
    rgba = Image.new("RGBA", (77, 33), (1, 2, 3, 4))  # lossy WebP with alpha is VP8X
    assert inspect_image(encode(rgba, "WEBP"), LIMITS).width == 77


def test_truncated_images_must_never_load_silently(pre: Preprocessor, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        pre(encode(Image.new("RGB", (20, 20), RED), "PNG"))


def test_fuzzed_bytes_only_ever_raise_image_rejected(pre: Preprocessor) -> None:
    """Flip bytes of valid files: any outcome but ImageRejected or a valid array is a bug."""
    rng = np.random.default_rng(4)
    seeds = [encode(halves((64, 48), RED, BLUE), fmt) for fmt in ("JPEG", "PNG", "WEBP")]
    for _ in range(300):
        data = bytearray(seeds[rng.integers(len(seeds))])
        for pos in rng.integers(0, len(data), size=rng.integers(1, 6)):
            data[pos] = rng.integers(0, 256)
        try:
            out = pre(bytes(data))
        except ImageRejected:
            continue
        assert out.shape == (224, 224, 3)


def test_os_random_is_rejected(pre: Preprocessor) -> None:
    for _ in range(20):
        with pytest.raises(ImageRejected):
            pre(os.urandom(256))
