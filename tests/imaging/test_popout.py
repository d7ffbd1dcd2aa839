"""The photo's most conspicuous part, from pixels alone: a second guess at where the product is."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from imagesearch.imaging.decode import WHOLE
from imagesearch.imaging.popout import SIDE, popout_box, spectral_residual


def _textured(size: tuple[int, int] = (640, 480), seed: int = 5) -> Image.Image:
    """Fine random texture (foliage, gravel): busy everywhere, conspicuous nowhere."""
    rng = np.random.default_rng(seed)
    w, h = size
    noise = rng.integers(90, 160, (h // 4, w // 4, 3), dtype=np.uint8)
    return Image.fromarray(noise).resize(size, Image.Resampling.NEAREST)


def test_a_small_object_on_a_busy_texture_is_what_pops_out() -> None:
    photo = _textured()
    box = (470, 60, 540, 130)  # an eleventh of the photo's width, off-centre
    ImageDraw.Draw(photo).ellipse(box, fill=(230, 40, 40), outline=(20, 20, 20), width=4)
    x0, y0, x1, y1 = popout_box(photo)
    cx, cy = (box[0] + box[2]) / 2 / 640, (box[1] + box[3]) / 2 / 480
    assert x0 <= cx <= x1 and y0 <= cy <= y1  # the box holds the object...
    assert (x1 - x0) * (y1 - y0) < 0.1  # ... and not much else of the photo


def test_the_map_is_a_normalised_square_whatever_the_photo() -> None:
    for size, mode in (((640, 480), "RGB"), ((300, 900), "L"), ((33, 20), "RGBA")):
        conspicuity = spectral_residual(_textured(size).convert(mode))
        assert conspicuity.shape == (SIDE, SIDE) and conspicuity.dtype == np.float32
        assert float(conspicuity.min()) >= 0.0 and float(conspicuity.max()) == 1.0


def test_a_flat_photo_has_nothing_that_pops_out() -> None:
    assert popout_box(Image.new("RGB", (320, 240), (120, 140, 160))) == WHOLE


def test_the_grey_copy_of_the_whole_photo_is_reserved_first() -> None:
    asked: list[int] = []
    popout_box(_textured((640, 480)), asked.append)
    assert asked == [640 * 480]
