"""What decoding holds: the cost reserved before Pillow allocates is an upper bound of what it does
allocate, JPEG drafts count at their reduced size, and 16-bit images convert without wide copies."""

from __future__ import annotations

import io
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagesearch.common.errors import ResourceExhausted
from imagesearch.imaging.colour import resample_mode
from imagesearch.imaging.decode import decode, decode_cost
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.sniff import Limits


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def test_the_cost_counts_the_pixels_the_larger_of_a_copy_and_a_conversion_and_the_reduction() -> None:
    pixels, extra = 1000, 1 << 20  # 100 x 10; the codec's buffers
    assert decode_cost("L", 100, 10) == pixels * (1 + 1 + 1) + extra
    assert decode_cost("RGB", 100, 10) == pixels * (4 + 4 + 1) + extra  # Pillow stores RGB in four bytes
    assert decode_cost("I;16", 100, 10) == pixels * (2 + 5 + 1) + extra  # samples as an array, 8-bit result
    assert decode_cost("P", 100, 10) == pixels * (1 + 4 + 1) + extra  # converted to RGB
    assert decode_cost("P", 100, 10, transparent=True) == pixels * (1 + 8 + 1) + extra  # to RGBA, premultiplied
    assert decode_cost("LA", 100, 10) == pixels * (4 + 8 + 1) + extra


def test_decode_reserves_the_cost_before_decoding_and_a_refusal_stops_it() -> None:
    data = encode(Image.new("RGB", (300, 200), (10, 20, 30)), "PNG")
    reserved: list[int] = []
    decode(data, Limits(), reserve=reserved.append)
    assert reserved == [decode_cost("RGB", 300, 200)]

    def refuse(amount: int) -> None:
        raise ResourceExhausted("no room")

    with pytest.raises(ResourceExhausted):
        decode(data, Limits(), reserve=refuse)


def test_a_jpeg_decoded_with_a_draft_reserves_only_its_reduced_size() -> None:
    data = encode(Image.new("RGB", (4000, 3000), (10, 20, 30)), "JPEG")
    reserved: list[int] = []
    Framing().plain(data, reserve=reserved.append)
    assert reserved and reserved[0] <= decode_cost("RGB", 4000, 3000) // 16  # 1/4 scale or smaller
    full: list[int] = []
    Framing().decode_photo(data, reserve=full.append)  # the localisation pass needs every pixel
    assert full == [decode_cost("RGB", 4000, 3000)]


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_sixteen_bit_grey_converts_in_about_its_own_size(mode: str) -> None:
    side = 2000
    samples = np.tile(np.arange(side, dtype=np.uint16) * 30, (side, 1))
    im = Image.fromarray(samples) if mode == "I;16" else Image.fromarray(samples.astype(np.int32), "I")
    tracemalloc.start()
    try:
        out = resample_mode(im)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.mode == "L"
    assert np.array_equal(np.asarray(out)[0, :4], (samples[0, :4].astype(np.int64) + 128) // 257)
    # The samples as an array (2 or 4 bytes a pixel; Pillow's tobytes() briefly holds them twice)
    # plus the 8-bit result. The 64-bit arithmetic this replaced held 8 bytes a pixel per temporary.
    sample_bytes = 2 if mode == "I;16" else 4
    assert peak < side * side * (2 * sample_bytes + 2), peak


MEASURE = """
import resource, sys
from imagesearch.imaging.framing import Framing
data = open(sys.argv[1], "rb").read()
framing, reserved = Framing(), []
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
if sys.argv[2] == "photo":  # the localisation pass: the whole photo decoded, framed twice
    import numpy as np
    photo = framing.decode_photo(data, reserve=reserved.append)
    framing.whole_photo(photo)
    framing.localized(photo, np.ones((14, 14), np.float32))
else:
    framing.plain(data, reserve=reserved.append)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(reserved[0], grown)
"""


@pytest.mark.parametrize(
    ("mode", "how"),
    [("I;16", "plain"), ("P", "plain"), ("1", "plain"), ("LA", "plain"), ("RGBA", "plain"), ("RGB", "photo")],
)
def test_the_reserved_cost_bounds_the_memory_that_decoding_and_framing_take(
    mode: str, how: str, tmp_path: Path
) -> None:
    """In a fresh process, so that its peak RSS measures this image alone."""
    side = 3000
    im = Image.fromarray(np.zeros((side, side), dtype=np.uint16)) if mode == "I;16" else Image.new(mode, (side, side))
    path = tmp_path / "image.png"
    im.save(path)
    assert path.stat().st_size < 200_000  # flat images compress to almost nothing: bomb-like uploads
    result = subprocess.run([sys.executable, "-c", MEASURE, str(path), how], check=True, capture_output=True, text=True)
    reserved, grown = map(int, result.stdout.split())
    assert grown <= reserved, (mode, grown, reserved)
