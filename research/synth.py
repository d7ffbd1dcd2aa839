"""Synthetic 'shopper photos' made from the index's own product shots (for training a projection head).

Cut-out: background level estimated from the image border; pixels within a tolerance of it are
background; the mask is softened (blur) so edges are alpha-like.
Backgrounds (none from the dataset's query backgrounds): procedural value noise at several scales,
linear/radial gradients, rotated stripes/checkers, and clutter collages of OTHER training items
(cut-outs pasted at random, then blurred), mixed and colour-shifted.
Generic augmentation: scale (object 25-95 % of the frame), rotation +-35 deg, perspective (+-10 %),
mirroring, partial occlusion by clutter (40 %), drop shadow (50 %), illumination gradient, colour jitter
(brightness/contrast/saturation/hue-ish cast), blur and/or noise, JPEG 30-85, landscape/portrait/square.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps


def cutout(im: Image.Image, tol=14) -> Image.Image:
    a = np.asarray(im.convert("RGB")).astype(np.int16)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    bg = np.median(border, axis=0)
    diff = np.abs(a - bg).max(-1)
    mask = Image.fromarray(((diff > tol) * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(3)).filter(ImageFilter.MinFilter(3))
    mask = mask.filter(ImageFilter.GaussianBlur(0.8))
    rgba = im.convert("RGBA")
    rgba.putalpha(mask)
    bbox = mask.getbbox() or (0, 0, im.width, im.height)
    return rgba.crop(bbox)


def value_noise(rng, w, h, cells):
    g = rng.random((cells + 1, cells + 1, 3)) * 255
    im = Image.fromarray(g.astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    return im


def procedural_bg(rng, w, h, clutter_pool):
    kind = rng.integers(0, 5)
    if kind == 0:  # multi-scale noise
        im = value_noise(rng, w, h, int(rng.integers(2, 6)))
        for _ in range(int(rng.integers(1, 3))):
            im = Image.blend(im, value_noise(rng, w, h, int(rng.integers(6, 40))), float(rng.uniform(0.2, 0.5)))
    elif kind == 1:  # gradient
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, w)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, h)[:, None, None]
        arr = c0 * (1 - t) + c1 * t
        arr = np.broadcast_to(arr, (h, w, 3)) + rng.normal(0, 4, (h, w, 3))
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    elif kind == 2:  # stripes / checker, rotated
        p = int(rng.integers(4, 40))
        yy, xx = np.mgrid[0:h * 2, 0:w * 2]
        pat = ((xx // p) % 2) if rng.random() < 0.5 else (((xx // p) + (yy // p)) % 2)
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        arr = np.where(pat[..., None] == 1, c0, c1).astype(np.uint8)
        im = Image.fromarray(arr).rotate(float(rng.uniform(0, 180)), resample=Image.Resampling.BILINEAR)
        im = im.crop((w // 2, h // 2, w // 2 + w, h // 2 + h)).filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 3))))
    else:  # clutter collage of other items on a noise base
        im = value_noise(rng, w, h, int(rng.integers(2, 8)))
        for _ in range(int(rng.integers(3, 9))):
            c = clutter_pool[int(rng.integers(len(clutter_pool)))]
            s = float(rng.uniform(0.15, 0.6)) * max(w, h) / max(c.size)
            c = c.resize((max(1, int(c.width * s)), max(1, int(c.height * s))), Image.Resampling.BILINEAR)
            c = c.rotate(float(rng.uniform(-180, 180)), expand=True, resample=Image.Resampling.BILINEAR)
            im.paste(c, (int(rng.integers(-c.width // 2, w)), int(rng.integers(-c.height // 2, h))), c)
        im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 2.5))))
    if kind != 1:
        im = ImageEnhance.Color(im.convert("RGB")).enhance(float(rng.uniform(0.2, 0.9)))
    return im.convert("RGB")


def perspective_coeffs(src, dst):
    A, B = [], []
    for (x, y), (u, v) in zip(dst, src):
        A += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        B += [u, v]
    return np.linalg.solve(np.array(A, float), np.array(B, float)).tolist()


def make_view(obj: Image.Image, rng, clutter_pool) -> Image.Image:
    W, H = [(320, 240), (240, 320), (256, 256)][int(rng.integers(3))]  # half of a phone photo, for speed
    bg = procedural_bg(rng, W, H, clutter_pool)
    o = obj
    if rng.random() < 0.5:
        o = ImageOps.mirror(o)
    # perspective
    w, h = o.size
    d = float(rng.uniform(0, 0.10))
    dst = [(rng.uniform(-d, d) * w, rng.uniform(-d, d) * h), (w + rng.uniform(-d, d) * w, rng.uniform(-d, d) * h),
           (w + rng.uniform(-d, d) * w, h + rng.uniform(-d, d) * h), (rng.uniform(-d, d) * w, h + rng.uniform(-d, d) * h)]
    mx, my = -min(p[0] for p in dst), -min(p[1] for p in dst)
    dst = [(x + mx, y + my) for x, y in dst]
    nw, nh = int(max(p[0] for p in dst)) + 1, int(max(p[1] for p in dst)) + 1
    o = o.transform((nw, nh), Image.Transform.PERSPECTIVE, perspective_coeffs([(0, 0), (w, 0), (w, h), (0, h)], dst),
                    Image.Resampling.BICUBIC)
    o = o.rotate(float(rng.uniform(-35, 35)), expand=True, resample=Image.Resampling.BICUBIC)
    o = o.crop(o.getbbox() or (0, 0, o.width, o.height))
    ext = float(rng.uniform(0.25, 0.95))
    s = ext / max(o.width / W, o.height / H)
    o = o.resize((max(1, int(o.width * s)), max(1, int(o.height * s))), Image.Resampling.BICUBIC)
    x, y = int(rng.integers(0, max(1, W - o.width + 1))), int(rng.integers(0, max(1, H - o.height + 1)))
    if rng.random() < 0.5:  # soft shadow
        alpha = o.getchannel("A").filter(ImageFilter.GaussianBlur(float(rng.uniform(2, 6))))
        sh = Image.new("RGBA", o.size, (0, 0, 0, 0))
        sh.putalpha(alpha.point(lambda v: int(v * rng.uniform(0.3, 0.6))))
        bg.paste(sh, (x + int(rng.integers(-8, 9)), y + int(rng.integers(-8, 9))), sh)
    bg.paste(o, (x, y), o)
    if rng.random() < 0.4:  # partial occlusion by a clutter item over the object
        c = clutter_pool[int(rng.integers(len(clutter_pool)))]
        cs = float(rng.uniform(0.2, 0.5)) * max(o.size) / max(c.size)
        c = c.resize((max(1, int(c.width * cs)), max(1, int(c.height * cs))), Image.Resampling.BILINEAR)
        bg.paste(c, (x + int(rng.uniform(-0.3, 0.9) * o.width), y + int(rng.uniform(-0.3, 0.9) * o.height)), c)
    box = (x, y, x + o.width, y + o.height)
    im = bg
    if rng.random() < 0.5:  # illumination gradient
        g = np.linspace(1 - rng.uniform(0.05, 0.3), 1, W if rng.random() < 0.5 else H)
        g = g[None, :, None] if len(g) == W else g[:, None, None]
        im = Image.fromarray(np.clip(np.asarray(im) * g, 0, 255).astype(np.uint8))
    im = ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.65, 1.35)))
    im = ImageEnhance.Contrast(im).enhance(float(rng.uniform(0.65, 1.35)))
    im = ImageEnhance.Color(im).enhance(float(rng.uniform(0.5, 1.5)))
    arr = np.asarray(im).astype(np.float32) * rng.uniform(0.9, 1.1, 3)
    r = rng.random()
    if r < 0.7:
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(float(rng.uniform(0.2, 1.0))))
        arr = np.asarray(im).astype(np.float32)
    if r > 0.4:
        arr = arr + rng.normal(0, rng.uniform(2, 9), arr.shape)
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=int(rng.integers(30, 86)))
    buf.seek(0)
    return Image.open(buf).convert("RGB"), box
