"""Synthetic shopper photos made from a catalog's own product shots.

Catalog shots are objects on a plain background, so the object can be cut out
and pasted on other scenes. Nothing here comes from any benchmark's query
photos: backgrounds are procedural (value noise, gradients, rotated stripes and
checkers, blurred collages of other catalog items), and the variations are
generic ones phones produce: scale (object 25-95 % of the frame), rotation
(+-35 deg), perspective (+-10 %), mirroring, partial occlusion by another item,
a soft shadow, an illumination gradient, colour and white-balance shifts, blur
and/or noise, JPEG quality 30-85, landscape/portrait/square frames.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

# Views are drawn at about half a phone photo's resolution: the model sees 224-288 px anyway.
FRAMES = ((320, 240), (240, 320), (256, 256))


@dataclass(frozen=True)
class View:
    """One synthetic photo (JPEG bytes, as a shopper's upload) and where the object is in it (pixels)."""

    jpeg: bytes
    width: int
    height: int
    box: tuple[float, float, float, float]


def _value_noise(rng: np.random.Generator, width: int, height: int, cells: int) -> Image.Image:
    grid = rng.random((cells + 1, cells + 1, 3)) * 255
    return Image.fromarray(grid.astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)


def background(rng: np.random.Generator, width: int, height: int, clutter: Sequence[Image.Image]) -> Image.Image:
    """A procedural scene: multi-scale noise, a gradient, stripes/checkers, or a collage of other items."""
    kind = int(rng.integers(0, 5))
    if kind == 0:
        im = _value_noise(rng, width, height, int(rng.integers(2, 6)))
        for _ in range(int(rng.integers(1, 3))):
            im = Image.blend(
                im, _value_noise(rng, width, height, int(rng.integers(6, 40))), float(rng.uniform(0.2, 0.5))
            )
    elif kind == 1:
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, width)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, height)[:, None, None]
        ramp = np.broadcast_to(c0 * (1 - t) + c1 * t, (height, width, 3)) + rng.normal(0, 4, (height, width, 3))
        im = Image.fromarray(np.clip(ramp, 0, 255).astype(np.uint8))
    elif kind == 2:
        period = int(rng.integers(4, 40))
        yy, xx = np.mgrid[0 : height * 2, 0 : width * 2]
        pattern = ((xx // period) % 2) if rng.random() < 0.5 else (((xx // period) + (yy // period)) % 2)
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        im = Image.fromarray(np.where(pattern[..., None] == 1, c0, c1).astype(np.uint8))
        im = im.rotate(float(rng.uniform(0, 180)), resample=Image.Resampling.BILINEAR)
        im = im.crop((width // 2, height // 2, width // 2 + width, height // 2 + height))
        im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 3))))
    else:
        im = _value_noise(rng, width, height, int(rng.integers(2, 8)))
        for _ in range(int(rng.integers(3, 9)) if clutter else 0):
            item = clutter[int(rng.integers(len(clutter)))]
            scale = float(rng.uniform(0.15, 0.6)) * max(width, height) / max(item.size)
            item = item.resize(
                (max(1, int(item.width * scale)), max(1, int(item.height * scale))), Image.Resampling.BILINEAR
            )
            item = item.rotate(float(rng.uniform(-180, 180)), expand=True, resample=Image.Resampling.BILINEAR)
            im.paste(
                item, (int(rng.integers(-item.width // 2, width)), int(rng.integers(-item.height // 2, height))), item
            )
        im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 2.5))))
    if kind != 1:
        im = ImageEnhance.Color(im.convert("RGB")).enhance(float(rng.uniform(0.2, 0.9)))
    return im.convert("RGB")


def _perspective_coefficients(source: list[tuple[float, float]], target: list[tuple[float, float]]) -> list[float]:
    rows, rhs = [], []
    for (x, y), (u, v) in zip(target, source):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return [float(c) for c in np.linalg.solve(np.array(rows, float), np.array(rhs, float))]


def _warp(obj: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Mirror (half the time), a perspective of up to 10 % and a rotation of up to 35 degrees."""
    if rng.random() < 0.5:
        obj = ImageOps.mirror(obj)
    w, h = obj.size
    d = float(rng.uniform(0, 0.10))
    corners: list[tuple[float, float]] = [(0, 0), (w, 0), (w, h), (0, h)]
    moved = [(x + rng.uniform(-d, d) * w, y + rng.uniform(-d, d) * h) for x, y in corners]
    dx, dy = -min(p[0] for p in moved), -min(p[1] for p in moved)
    moved = [(x + dx, y + dy) for x, y in moved]
    size = (int(max(p[0] for p in moved)) + 1, int(max(p[1] for p in moved)) + 1)
    obj = obj.transform(
        size, Image.Transform.PERSPECTIVE, _perspective_coefficients(corners, moved), Image.Resampling.BICUBIC
    )
    obj = obj.rotate(float(rng.uniform(-35, 35)), expand=True, resample=Image.Resampling.BICUBIC)
    return obj.crop(obj.getbbox() or (0, 0, obj.width, obj.height))


def _photographic(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Lighting, colour, blur, noise: what a phone and a room do to a picture."""
    width, height = im.size
    if rng.random() < 0.5:
        along_x = rng.random() < 0.5
        gain = np.linspace(1 - rng.uniform(0.05, 0.3), 1, width if along_x else height)
        gain = gain[None, :, None] if along_x else gain[:, None, None]
        im = Image.fromarray(np.clip(np.asarray(im) * gain, 0, 255).astype(np.uint8))
    im = ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.65, 1.35)))
    im = ImageEnhance.Contrast(im).enhance(float(rng.uniform(0.65, 1.35)))
    im = ImageEnhance.Color(im).enhance(float(rng.uniform(0.5, 1.5)))
    pixels = np.asarray(im).astype(np.float32) * rng.uniform(0.9, 1.1, 3)  # white balance
    pick = rng.random()
    if pick < 0.7:
        blurred = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(float(rng.uniform(0.2, 1.0)))
        )
        pixels = np.asarray(blurred).astype(np.float32)
    if pick > 0.4:
        pixels = pixels + rng.normal(0, rng.uniform(2, 9), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


# The object's longer side, as a share of the frame's: from far off to filling the photo.
EXTENT = (0.25, 0.95)


def make_view(
    obj: Image.Image,
    rng: np.random.Generator,
    clutter: Sequence[Image.Image],
    extent_range: tuple[float, float] = EXTENT,
) -> View:
    """One synthetic photo of `obj` (an RGBA cut-out) with `clutter` (other items' cut-outs) around it."""
    width, height = FRAMES[int(rng.integers(len(FRAMES)))]
    scene = background(rng, width, height, clutter)
    warped = _warp(obj, rng)
    extent = float(rng.uniform(*extent_range))
    scale = extent / max(warped.width / width, warped.height / height)
    warped = warped.resize(
        (max(1, int(warped.width * scale)), max(1, int(warped.height * scale))), Image.Resampling.BICUBIC
    )
    x = int(rng.integers(0, max(1, width - warped.width + 1)))
    y = int(rng.integers(0, max(1, height - warped.height + 1)))
    if rng.random() < 0.5:  # soft drop shadow
        alpha = warped.getchannel("A").filter(ImageFilter.GaussianBlur(float(rng.uniform(2, 6))))
        strength = float(rng.uniform(0.3, 0.6))
        shadow = Image.new("RGBA", warped.size, (0, 0, 0, 0))
        shadow.putalpha(alpha.point(lambda v: int(v * strength)))
        scene.paste(shadow, (x + int(rng.integers(-8, 9)), y + int(rng.integers(-8, 9))), shadow)
    scene.paste(warped, (x, y), warped)
    if clutter and rng.random() < 0.4:  # another item partly in front of the product
        item = clutter[int(rng.integers(len(clutter)))]
        scale = float(rng.uniform(0.2, 0.5)) * max(warped.size) / max(item.size)
        item = item.resize(
            (max(1, int(item.width * scale)), max(1, int(item.height * scale))), Image.Resampling.BILINEAR
        )
        scene.paste(
            item,
            (x + int(rng.uniform(-0.3, 0.9) * warped.width), y + int(rng.uniform(-0.3, 0.9) * warped.height)),
            item,
        )
    photo = _photographic(scene, rng)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=int(rng.integers(30, 86)))
    return View(buffer.getvalue(), width, height, (x, y, x + warped.width, y + warped.height))


def query_crop(
    view: View, rng: np.random.Generator, whole_photo_share: float = 0.25
) -> tuple[float, float, float, float]:
    """The relative box a query's localisation would plausibly find: the true box, jittered
    (each side -5..+25 % of the object, shifted up to 8 %), or the whole photo `whole_photo_share` of the time
    (localisation sometimes finds nothing better). Training on imperfect boxes is what makes it robust."""
    if rng.random() < whole_photo_share:
        return (0.0, 0.0, 1.0, 1.0)
    x0, y0, x1, y1 = view.box
    w, h = x1 - x0, y1 - y0
    grow = rng.uniform(-0.05, 0.25, 4)
    sx, sy = rng.uniform(-0.08, 0.08, 2)
    left = max(0.0, x0 - grow[0] * w + sx * w)
    top = max(0.0, y0 - grow[1] * h + sy * h)
    right = min(view.width, x1 + grow[2] * w + sx * w)
    bottom = min(view.height, y1 + grow[3] * h + sy * h)
    if right - left < 2 or bottom - top < 2:
        return (0.0, 0.0, 1.0, 1.0)
    return (left / view.width, top / view.height, right / view.width, bottom / view.height)


__all__ = ["View", "background", "make_view", "query_crop"]
