"""The object of a catalog shot: its box, the trimmed view the embedder indexes beside the whole shot, its cut-out.

Pure functions on images generated in memory.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imagesearch.imaging.decode import ResizeMode
from imagesearch.imaging.frame import Preprocessor
from imagesearch.imaging.objects import cutout, object_box, object_mask, relative_box
from imagesearch.imaging.sniff import Limits

WHITE, LIGHT_GREY, RED, NAVY = (255, 255, 255), (235, 235, 235), (200, 40, 40), (30, 40, 120)
LIMITS = Limits(max_bytes=20 * 1024 * 1024, max_pixels=40_000_000)


def shot(
    box: tuple[int, int, int, int],
    background: tuple[int, int, int] = WHITE,
    colour: tuple[int, int, int] = RED,
    size: tuple[int, int] = (400, 300),
) -> Image.Image:
    """A product shot: a filled ellipse with bounding box `box` (x1, y1 exclusive) on a plain background."""
    im = Image.new("RGB", size, background)
    ImageDraw.Draw(im).ellipse((box[0], box[1], box[2] - 1, box[3] - 1), fill=colour)
    return im


def encode(im: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def reencoded(im: Image.Image, quality: int) -> Image.Image:
    return Image.open(io.BytesIO(encode(im, "JPEG", quality=quality)))


def research_box(im: Image.Image, tolerance: int = 14) -> tuple[int, int, int, int] | None:
    """The research's `obj_box` (research/exp_tight.py at 356899b), margin 0, in numpy: the definition the figures were measured with."""
    a = np.asarray(im.convert("RGB")).astype(np.int16)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    ys, xs = np.nonzero(np.abs(a - np.median(border, 0)).max(-1) > tolerance)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# --------------------------------------------------------------------------- the box


def test_an_object_on_white_is_boxed_exactly() -> None:
    assert object_box(shot((120, 80, 261, 221))) == (120, 80, 261, 221)


def test_a_light_grey_background_is_as_plain_as_white() -> None:
    # A white product on light grey differs by 20 levels: enough to stand out.
    assert object_box(shot((50, 40, 150, 260), background=LIGHT_GREY, colour=WHITE)) == (50, 40, 150, 260)
    assert object_box(shot((200, 10, 390, 90), background=LIGHT_GREY, colour=NAVY)) == (200, 10, 390, 90)


def test_differences_of_at_most_14_levels_are_background() -> None:
    faint = shot((100, 100, 200, 200), background=LIGHT_GREY, colour=(249, 221, 235))  # +-14 levels: background
    assert object_box(faint) is None
    assert object_box(shot((100, 100, 200, 200), background=LIGHT_GREY, colour=(250, 235, 235))) == (100, 100, 200, 200)


def test_an_object_touching_the_border_is_boxed_to_the_edge() -> None:
    im = Image.new("RGB", (400, 300), WHITE)
    ImageDraw.Draw(im).rectangle((0, 120, 149, 299), fill=NAVY)  # cut off by the left and bottom edges
    assert object_box(im) == (0, 120, 150, 300)


def test_a_blank_image_is_the_whole_image() -> None:
    assert object_box(Image.new("RGB", (64, 48), WHITE)) is None
    assert object_box(Image.new("RGB", (1, 1), RED)) is None
    assert relative_box(None, 64, 48) == (0.0, 0.0, 1.0, 1.0)


def test_a_photo_without_a_plain_background_is_the_whole_image() -> None:
    noise = np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert object_box(Image.fromarray(noise)) is None
    # An object filling all but a sliver of the frame is not worth a second framing either.
    assert object_box(shot((1, 1, 399, 299), size=(400, 300))) is None


def test_jpeg_noise_on_the_background_is_tolerated() -> None:
    truth = (120, 80, 261, 221)
    for quality in (95, 75, 50):
        for background, colour in ((WHITE, RED), (LIGHT_GREY, NAVY)):
            x0, y0, x1, y1 = object_box(reencoded(shot(truth, background, colour), quality))  # type: ignore[misc]
            # Compression ringing stays within the object's own 16-px macroblocks; the rest of the
            # background, however noisy, never joins the box.
            assert truth[0] - 16 <= x0 <= truth[0] and truth[1] - 16 <= y0 <= truth[1], (quality, background)
            assert truth[2] <= x1 <= truth[2] + 16 and truth[3] <= y1 <= truth[3] + 16, (quality, background)


def test_sensor_noise_under_the_tolerance_does_not_move_the_box() -> None:
    rng = np.random.default_rng(7)
    pixels = np.asarray(shot((60, 30, 300, 250), background=LIGHT_GREY, colour=NAVY)).astype(np.int16)
    noisy = np.clip(pixels + rng.integers(-10, 11, pixels.shape), 0, 255).astype(np.uint8)
    assert object_box(Image.fromarray(noisy)) == (60, 30, 300, 250)


@pytest.mark.parametrize("quality", [None, 90, 60])
def test_the_box_is_the_researched_one(quality: int | None) -> None:
    """Same pixels, same box as research/exp_tight.py, also where the border's median falls between two levels."""
    rng = np.random.default_rng(11)
    for trial in range(6):
        size = (int(rng.integers(80, 300)), int(rng.integers(80, 300)))
        background = tuple(int(v) for v in rng.integers(200, 256, 3))
        im = Image.new("RGB", size, background)
        # An even number of border pixels split between two levels puts the median half-way.
        im.paste(tuple(v - 1 for v in background), (0, 0, size[0] // 2, size[1]))
        x0, y0 = int(rng.integers(5, size[0] // 2)), int(rng.integers(5, size[1] // 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        ImageDraw.Draw(im).ellipse(
            (x0, y0, int(rng.integers(x0 + 2, size[0] - 5)), int(rng.integers(y0 + 2, size[1] - 5))), fill=colour
        )
        if quality is not None:
            im = reencoded(im, quality)
        assert object_box(im) == research_box(im), trial


def test_transparency_is_background_like_white() -> None:
    im = Image.new("RGBA", (200, 100), (0, 0, 0, 0))  # transparent black: white once flattened
    ImageDraw.Draw(im).rectangle((20, 30, 59, 79), fill=(*RED, 255))
    assert object_box(im) == (20, 30, 60, 80)
    assert object_box(im.convert("LA")) == (20, 30, 60, 80)


def test_grayscale_and_palette_images() -> None:
    im = shot((30, 40, 90, 100), colour=(90, 90, 90))
    assert object_box(im.convert("L")) == (30, 40, 90, 100)
    assert object_box(im.convert("P")) == (30, 40, 90, 100)


def test_a_12_megapixel_shot_is_boxed_quickly() -> None:
    im = shot((1200, 700, 2800, 2300), size=(4000, 3000))
    object_box(im)  # warm-up
    started = time.perf_counter()
    box = object_box(im)
    elapsed = time.perf_counter() - started
    assert box == (1200, 700, 2800, 2300)
    assert elapsed < 0.5, f"{elapsed:.3f} s"  # ~30 ms: a lookup table and getbbox in C, no full-size numpy copy


# --------------------------------------------------------------------------- the trimmed view


@pytest.fixture
def pre() -> Preprocessor:
    return Preprocessor(limits=LIMITS, size=(224, 224))


def test_the_trimmed_view_letterboxes_the_object(pre: Preprocessor) -> None:
    im = Image.new("RGB", (400, 400), WHITE)
    ImageDraw.Draw(im).rectangle((100, 150, 299, 249), fill=RED)  # 200 x 100: fills the width, half the height
    view = pre.trimmed_to_object(encode(im))
    assert view.shape == (224, 224, 3)
    column = view[:, 112].astype(int)
    red_rows = np.nonzero(np.abs(column - RED).max(1) <= 12)[0]
    assert 54 <= red_rows.min() <= 58 and 166 <= red_rows.max() <= 170  # the 224 x 112 object, centred
    assert (view[:50] >= 250).all() and (view[175:] >= 250).all()  # white bands above and below
    assert (np.abs(view[112].astype(int) - RED).max(1) <= 12).all()  # edge to edge across


def test_the_trimmed_view_is_the_pad_framing_of_the_box(pre: Preprocessor) -> None:
    im = shot((120, 80, 261, 221), background=LIGHT_GREY)
    data = encode(im)
    decoded = pre.decode(data)
    expected = pre.frame(decoded, relative_box((120, 80, 261, 221), 400, 300), ResizeMode.PAD)
    assert np.array_equal(pre.trimmed_to_object(data), expected)


def test_a_blank_shot_is_trimmed_to_itself(pre: Preprocessor) -> None:
    data = encode(Image.new("RGB", (300, 200), LIGHT_GREY))
    whole = pre.frame(pre.decode(data), (0.0, 0.0, 1.0, 1.0), ResizeMode.PAD)
    assert np.array_equal(pre.trimmed_to_object(data), whole)


def test_the_box_is_found_in_displayed_orientation(pre: Preprocessor) -> None:
    # Stored landscape, shown portrait (EXIF 6 = rotate 90 degrees clockwise to display).
    stored = Image.new("RGB", (300, 200), WHITE)
    ImageDraw.Draw(stored).rectangle((0, 0, 99, 199), fill=RED)  # the left third, stored
    exif = Image.Exif()
    exif[0x0112] = 6
    view = pre.trimmed_to_object(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    # Displayed 200 x 300 with the red band on top; trimmed, the 200 x 100 band fills the width.
    assert (np.abs(view[112].astype(int) - RED).max(1) <= 16).all()
    assert (view[:50] >= 245).all() and (view[175:] >= 245).all()


# --------------------------------------------------------------------------- the cut-out


def test_the_cut_out_is_the_object_on_a_transparent_ground() -> None:
    im = shot((180, 130, 220, 170))
    piece = cutout(im)
    # Cropped to the object; the softened edge reaches a couple of pixels beyond its 40 x 40 box.
    assert piece.mode == "RGBA" and 40 <= piece.width == piece.height <= 46
    alpha = np.asarray(piece)[..., 3]
    middle = piece.width // 2
    assert alpha[middle, middle] == 255 and alpha[0, 0] == 0  # inside opaque, outside the ellipse transparent
    assert object_mask(im.convert("RGB")).getbbox() == research_box(im)  # the same pixels as the box
