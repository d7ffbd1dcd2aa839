"""The photo's most conspicuous part: a second guess at where the product is, from pixels alone.

The model's SALIENCY map (imaging.localize) is where the network's activations concentrate; on a
textured photo (foliage, rock, a busy wallpaper) the texture is as active as a small product, and the
box it gives holds the texture. The spectral residual (Hou and Zhang, "Saliency detection: a spectral
residual approach", CVPR 2007) marks instead what is unlike the rest of the image, whatever it is:
the photo in grey at 64 x 64 px, its log amplitude spectrum minus that spectrum's 3 x 3 local mean,
transformed back with the original phase, squared and blurred. Its box (the same rule as the model's
map: mean + 1 std, the largest connected region) is a poor main box but a good *second* one: searched
beside the main crop when the main crop's match is unconvincing, it finds small products the model's
map misses (docs/quality.md, "A model-free second box"). No model evaluation; the cost is reducing
the photo (measured on a 2-core x86_64 VM: ~3 ms for 640 x 480, ~21 ms for 12 MP).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage

from imagesearch.common.types import Floats
from imagesearch.imaging.decode import RelativeBox, Reserve
from imagesearch.imaging.localize import subject_box

SIDE = 64  # the paper's working size: the spectrum of a small image carries the shape of things, not texture
SPECTRUM_MEAN = 3  # side of the local mean subtracted from the log amplitude spectrum
BLUR_SIGMA = 2.5  # px of SIDE: the map smoothed before it is thresholded
FLAT_LEVELS = 2.0  # grey levels: an image spanning fewer is one colour


def spectral_residual(image: Image.Image, reserve: Reserve | None = None) -> Floats:
    """(SIDE, SIDE) conspicuity of `image` (stretched to a square), in [0, 1]; all 0 for one colour.
    `reserve`, where given, is called first with the bytes of the grey copy made of the whole image
    (a decode-memory budget: imaging.decode.decode_cost)."""
    if reserve is not None and image.mode != "L":
        reserve(image.width * image.height)
    grey = np.asarray(image.convert("L").resize((SIDE, SIDE), Image.Resampling.BILINEAR), np.float64)
    if np.ptp(grey) < FLAT_LEVELS:  # one colour: nothing is unlike the rest (and the spectrum is all DC)
        return np.zeros((SIDE, SIDE), np.float32)
    spectrum = np.fft.fft2(grey)
    log_amplitude = np.log(np.abs(spectrum) + 1e-9)
    residual = log_amplitude - ndimage.uniform_filter(log_amplitude, size=SPECTRUM_MEAN, mode="nearest")
    back = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    smooth: NDArray[np.float64] = ndimage.gaussian_filter(back, sigma=BLUR_SIGMA)
    peak = float(smooth.max())
    return np.asarray(smooth / peak if peak > 0 else smooth, np.float32)


def popout_box(image: Image.Image, reserve: Reserve | None = None) -> RelativeBox:
    """Relative (x0, y0, x1, y1) box of the image's most conspicuous region (the whole image when
    nothing stands out). The map covers the image stretched to a square, so its relative box is
    the image's."""
    return subject_box(spectral_residual(image, reserve), SIDE, SIDE)


__all__ = ["popout_box", "spectral_residual"]
