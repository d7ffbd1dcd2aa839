"""Build the judge set: a retrieval benchmark in the dev set's format from other products, other
backgrounds and other kinds of variation, to measure how well matching holds up on photos unlike dev's.

The dev set (../shared/datasets/dev) is built from tuxpaint stamps and openclipart on KDE, MATE and
GNOME wallpapers; a held-out set built the same way from other products is where the product is
really judged, and it has variations dev lacks. This set stands in for it: icon-theme objects from
other Debian packages, other wallpapers, and one main kind of variation per query (occluded, small,
mirrored, rotated, motion blur, low light, cut by the frame, several products, or clean), each with
mild general noise. Nothing here is shared with `imagesearch adapt`'s synthetic views: the recipe is
written separately with its own parameters, so the judge does not reward fitting to that recipe.

The output folder has the dev layout (catalog/, queries/, distractors/, catalog.csv, distractors.csv,
queries.csv, queries_meta.csv with a `variation` column, sources.csv) and a README.md with the recipe,
the sources and their licences, so `imagesearch eval <out>` reports Recall per kind of variation.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import math
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "var" / "datasets" / "judge"
DEFAULT_SEED = 20240917

# The kinds of variation; each query has exactly one, in about equal shares.
KINDS = ("clean", "occluded", "small", "mirrored", "rotated", "motion_blur", "low_light", "cut", "multi")

PRODUCT_SIDE = 512  # catalog shots, as dev
DISTRACTOR_SIDE = 256  # distractor shots, as dev
FRAMES = ((640, 480), (480, 640))  # landscape, phone portrait

# Where the images come from (Debian 12 packages), by role. Each entry: package, icon folder, the
# contexts used, and the folder below the context holding the largest renders ("" = none).
# Product and distractor packages are disjoint, and none of them is one dev uses.
PRODUCT_PACKAGES = (
    ("oxygen-icon-theme", "/usr/share/icons/oxygen/base/256x256", ("apps", "categories", "devices", "places")),
    ("gnome-icon-theme", "/usr/share/icons/gnome/256x256", ("apps", "categories", "devices", "places", "status")),
    ("gnome-icon-theme-gartoon", "/usr/share/icons/gartoon/scalable", ("apps", "devices", "filesystems", "stock")),
)
DISTRACTOR_PACKAGES = (
    (
        "faenza-icon-theme",
        "/usr/share/icons/Faenza/{context}/scalable",
        ("apps", "categories", "devices", "places", "status"),
    ),
    (
        "elementary-icon-theme",
        "/usr/share/icons/elementary/{context}/128",
        ("apps", "categories", "devices", "places", "status"),
    ),
    (
        "tango-icon-theme",
        "/usr/share/icons/Tango/scalable/{context}",
        ("apps", "categories", "devices", "places", "status"),
    ),
    ("moka-icon-theme", "/usr/share/icons/Moka/256x256/{context}", ("apps", "categories", "devices", "places")),
)
BACKGROUND_GLOBS = (
    ("lomiri-wallpapers-16.04", "/usr/share/backgrounds", "*.jpg"),
    ("lomiri-wallpapers-20.04", "/usr/share/backgrounds", "*.jpg"),
    ("lomiri-wallpapers", "/usr/share/backgrounds", "*.png"),
    ("ukui-wallpapers", "/usr/share/backgrounds", "*"),
    ("desktop-base", "/usr/share/desktop-base", "*-theme/wallpaper/contents/images/1920x1080.svg"),
)
LICENCES = {
    "oxygen-icon-theme": "LGPL-3+, (c) David Miller and the Oxygen team",
    "gnome-icon-theme": "GPL-2+ / GPL-3+ (per file), (c) the GNOME Project (Andreas Nilsson et al.)",
    "gnome-icon-theme-gartoon": "GPL-2+, (c) La Mula Francis",
    "faenza-icon-theme": "GPL-3+, (c) Matthieu James",
    "elementary-icon-theme": "GPL-3+, (c) elementary, Inc. and contributors",
    "tango-icon-theme": "public domain (the Tango Desktop Project)",
    "moka-icon-theme": "CC-BY-SA-4.0 or GPL-3+, (c) Sam Hewitt and the Ubuntu Budgie developers",
    "lomiri-wallpapers-16.04": "CC-BY-4.0, CC-BY-SA-3.0/4.0 or CC0-1.0 per file, photographers named in the file names",
    "lomiri-wallpapers-20.04": "CC-BY-4.0, CC-BY-SA-3.0/4.0 or CC0-1.0 per file, artists named in the file names",
    "lomiri-wallpapers": "CC-BY-SA-3.0 / CC-BY-4.0 (Canonical and the UBports community)",
    "ukui-wallpapers": "CC-BY-SA-3.0, the Ubuntu Kylin community",
    "desktop-base": "GPL-2+ / GPL-3+ or CC-BY-SA-3.0 per theme (Debian desktop artwork)",
    "fixture": "made by the caller",
}
# Contexts of the icon-naming spec under other folder names.
CONTEXT_ALIASES = {"filesystems": "places", "mimes": "mimetypes"}

SKIN_TONES = ((241, 194, 160), (224, 172, 138), (198, 134, 98), (160, 106, 72), (112, 72, 48), (250, 214, 184))
# Colour casts of poor indoor light: the gain of each channel at full strength.
CASTS = {"tungsten": (1.0, 0.78, 0.52), "fluorescent": (0.84, 1.0, 0.78), "shade": (0.74, 0.88, 1.08)}


@dataclass(frozen=True)
class Source:
    """An image file in a package, and what the dataset calls it."""

    package: str
    path: Path
    rel: str  # the path sources.csv records
    category: str
    title: str


@dataclass
class Cutout:
    """A source rendered to RGBA and trimmed to its object."""

    source: Source
    image: Image.Image
    product_id: str = ""
    signature: NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))


# --------------------------------------------------------------------------- sources


def _context_of(folder: str) -> str:
    return CONTEXT_ALIASES.get(folder, folder)


def _title(stem: str) -> str:
    return stem.replace("_", " ").replace("-", " ").strip()


def _icon_sources(packages: Sequence[tuple[str, str, Sequence[str]]], root: Path) -> list[Source]:
    found: dict[Path, Source] = {}
    for package, folder, contexts in packages:
        for context in contexts:
            base = root / (folder.format(context=context) if "{context}" in folder else f"{folder}/{context}").lstrip(
                "/"
            )
            for path in sorted(base.glob("*")) if base.is_dir() else []:
                if path.suffix.lower() not in (".png", ".svg") or not path.exists():
                    continue
                real = path.resolve()  # themes alias one drawing under several names: keep one
                if real not in found:
                    found[real] = Source(package, real, str(path.relative_to(root)), _context_of(context), path.stem)
    return list(found.values())


def _fixture_sources(folder: Path) -> list[Source]:
    return [
        Source("fixture", p, str(p.relative_to(folder.parent)), str(p.parent.relative_to(folder)) or "misc", p.stem)
        for p in sorted(folder.rglob("*"))
        if p.suffix.lower() in (".png", ".svg", ".jpg", ".jpeg", ".webp")
    ]


def _categorised(sources: list[Source]) -> list[Source]:
    """Category = context/first word of the icon name where at least 3 icons share it (devices/media,
    places/folder, status/battery), else the context alone: two levels, like dev's."""
    words = Counter((s.category, s.title.split("-")[0].split("_")[0]) for s in sources)
    out = []
    for s in sources:
        word = s.title.split("-")[0].split("_")[0]
        category = f"{s.category}/{word}" if words[(s.category, word)] >= 3 and "/" not in s.category else s.category
        out.append(Source(s.package, s.path, s.rel, category, _title(s.title)))
    return out


def discover(root: Path, fixtures: Path | None) -> tuple[list[Source], list[Source], list[Source]]:
    """Product, distractor and background candidates: from the fixture folder when given
    (products/, distractors/, backgrounds/), else from the Debian packages under `root`."""
    if fixtures is not None:
        products = _fixture_sources(fixtures / "products")
        distractors = _fixture_sources(fixtures / "distractors")
        backgrounds = _fixture_sources(fixtures / "backgrounds")
    else:
        products = _categorised(_icon_sources(PRODUCT_PACKAGES, root))
        distractors = _categorised(_icon_sources(DISTRACTOR_PACKAGES, root))
        backgrounds = []
        seen: set[Path] = set()
        for package, folder, pattern in BACKGROUND_GLOBS:
            for path in sorted((root / folder.lstrip("/")).glob(pattern)):
                if path.is_file() and path.resolve() not in seen and _owner(path) == package:
                    seen.add(path.resolve())
                    backgrounds.append(Source(package, path, str(path.relative_to(root)), "background", path.stem))
    return products, distractors, backgrounds


def _owner(path: Path) -> str:
    """The Debian package a file belongs to (dpkg -S), so each background is credited to the right one."""
    try:
        out = subprocess.run(["dpkg", "-S", str(path)], check=False, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.split(":")[0].strip() if out else ""


def package_version(package: str) -> str:
    if package == "fixture":
        return "-"
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], check=False, capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.strip() or "?"


# --------------------------------------------------------------------------- rendering


def render(path: Path, side: int) -> Image.Image:
    """An image file as RGBA; SVGs rasterised by rsvg-convert with the longest side `side` px."""
    if path.suffix.lower() == ".svg":
        png = subprocess.run(
            ["rsvg-convert", "-w", str(side), "-h", str(side), "-a", "-f", "png", str(path)],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        image = Image.open(io.BytesIO(png))
    else:
        image = Image.open(path)
    image.load()
    return image.convert("RGBA")


def trimmed(image: Image.Image) -> Image.Image | None:
    """The object cut to its alpha box; None for an empty, faint, or wisp-like icon."""
    alpha = image.getchannel("A").point(lambda v: 255 if v > 24 else 0)
    box = alpha.getbbox()
    if box is None:
        return None
    image = image.crop(box)
    w, h = image.size
    filled = np.asarray(image.getchannel("A")) > 24
    if max(w, h) / max(1, min(w, h)) > 3.5 or filled.mean() < 0.2:
        return None
    return image


def load_cutout(job: tuple[Source, int, int]) -> Cutout | None:
    """Render, trim and size-check one source (in a worker process)."""
    source, side, min_side = job
    try:
        image = trimmed(render(source.path, side))
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    if image is None or max(image.size) < min_side:
        return None
    if max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return Cutout(source, image, signature=signature(image))


def signature(image: Image.Image) -> NDArray[np.float32]:
    """A 24 x 24 colour thumbnail on white, centred and normalised: a cosine of two of these near 1
    means the same drawing (possibly recoloured slightly or re-rendered)."""
    side = max(image.size)
    canvas = Image.new("RGB", (side, side), "white")
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2), image)
    vector = np.asarray(canvas.resize((24, 24), Image.Resampling.BOX), np.float32).ravel()
    vector = vector - vector.mean()
    return np.asarray(vector / (np.linalg.norm(vector) + 1e-6), np.float32)


def _mirrored_signature(cutout: Cutout) -> NDArray[np.float32]:
    return np.asarray(cutout.signature).reshape(24, 24, 3)[:, ::-1].ravel()


def deduplicate(
    cutouts: list[Cutout], threshold: float, against: Sequence[Cutout] = (), against_threshold: float = 1.1
) -> list[Cutout]:
    """Keep one of each cluster of near-identical drawings (mirrored copies included, cosine >= threshold),
    in the given order, and none within `against_threshold` of an item of `against`."""
    kept: list[Cutout] = []
    kept_vectors: list[NDArray[np.float32]] = []
    others = np.stack([c.signature for c in against]) if against else np.zeros((0, 24 * 24 * 3), np.float32)
    for cutout in cutouts:
        both = np.stack([cutout.signature, _mirrored_signature(cutout)])
        if len(others) and float((others @ both.T).max()) >= against_threshold:
            continue
        if kept_vectors and float((np.stack(kept_vectors) @ both.T).max()) >= threshold:
            continue
        kept.append(cutout)
        kept_vectors.append(cutout.signature)
    return kept


def load_all(
    sources: Sequence[Source], side: int, min_side: int, workers: int, progress: bool, what: str
) -> list[Cutout]:
    jobs = [(s, side, min_side) for s in sources]
    bar = {"total": len(jobs), "unit": "img", "desc": f"rendering {what}", "disable": not progress, "file": sys.stderr}
    if workers <= 1:
        results = [load_cutout(j) for j in tqdm(jobs, **bar)]  # type: ignore[arg-type]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(tqdm(pool.map(load_cutout, jobs, chunksize=8), **bar))  # type: ignore[arg-type]
    return [r for r in results if r is not None]


def opaque_id(prefix: str, *parts: object) -> str:
    return prefix + hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:8]


# --------------------------------------------------------------------------- catalog-style shots


def catalog_shot(cutout: Image.Image, side: int, rng: np.random.Generator) -> Image.Image:
    """The object centred on white (70 %) or very light grey (240-248), longest side 78-90 % of the canvas."""
    level = 255 if rng.random() < 0.7 else int(rng.integers(240, 249))
    canvas = Image.new("RGB", (side, side), (level, level, level))
    target = float(rng.uniform(0.78, 0.90)) * side
    scale = target / max(cutout.size)
    obj = cutout.resize(
        (max(1, round(cutout.width * scale)), max(1, round(cutout.height * scale))), Image.Resampling.LANCZOS
    )
    canvas.paste(obj, ((side - obj.width) // 2, (side - obj.height) // 2), obj)
    return canvas


# --------------------------------------------------------------------------- shopper photos


def background_crop(background: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A random crop of 40-100 % of the largest crop of the frame's aspect, mirrored at random."""
    width, height = size
    scale = min(background.width / width, background.height / height)
    share = float(rng.uniform(0.40, 1.0))
    cw, ch = max(8, int(width * scale * share)), max(8, int(height * scale * share))
    x = int(rng.integers(0, background.width - cw + 1))
    y = int(rng.integers(0, background.height - ch + 1))
    crop = background.crop((x, y, x + cw, y + ch)).resize(size, Image.Resampling.BILINEAR)
    return ImageOps.mirror(crop) if rng.random() < 0.5 else crop


def _homography(src: Sequence[tuple[float, float]], dst: Sequence[tuple[float, float]]) -> list[float]:
    """The 8 coefficients PIL's PERSPECTIVE transform wants: output pixel -> input pixel."""
    a, b = [], []
    for (u, v), (x, y) in zip(src, dst):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b += [u, v]
    return [float(c) for c in np.linalg.lstsq(np.array(a, float), np.array(b, float), rcond=None)[0]]


def tilt(obj: Image.Image, rotation: float, perspective: float, rng: np.random.Generator) -> Image.Image:
    """Rotate by `rotation` degrees after pulling each corner up to `perspective` x the size inward or outward."""
    w, h = obj.size
    if perspective > 0:
        corners = [(0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h))]
        moved = [
            (x + rng.uniform(-perspective, perspective) * w, y + rng.uniform(-perspective, perspective) * h)
            for x, y in corners
        ]
        left, top = min(p[0] for p in moved), min(p[1] for p in moved)
        moved = [(x - left, y - top) for x, y in moved]
        size = (math.ceil(max(p[0] for p in moved)) + 1, math.ceil(max(p[1] for p in moved)) + 1)
        obj = obj.transform(size, Image.Transform.PERSPECTIVE, _homography(corners, moved), Image.Resampling.BICUBIC)
    if rotation:
        obj = obj.rotate(rotation, expand=True, resample=Image.Resampling.BICUBIC)
    box = obj.getchannel("A").getbbox()
    return obj.crop(box) if box else obj


def resized(obj: Image.Image, longest: float) -> Image.Image:
    scale = max(1.0, longest) / max(obj.size)
    return obj.resize((max(1, round(obj.width * scale)), max(1, round(obj.height * scale))), Image.Resampling.LANCZOS)


def fitted(obj: Image.Image, extent: float, frame: tuple[int, int]) -> Image.Image:
    """Scaled so that max(w/W, h/H) = extent."""
    scale = extent / max(obj.width / frame[0], obj.height / frame[1])
    return obj.resize((max(1, round(obj.width * scale)), max(1, round(obj.height * scale))), Image.Resampling.LANCZOS)


def mask_in_frame(obj: Image.Image, at: tuple[int, int], frame: tuple[int, int]) -> NDArray[np.bool_]:
    """The object's opaque pixels, placed at `at`, as a boolean frame-sized array."""
    layer = Image.new("L", frame, 0)
    layer.paste(obj.getchannel("A"), at)
    return np.asarray(layer) > 128


def drop_shadow(scene: Image.Image, obj: Image.Image, at: tuple[int, int], rng: np.random.Generator) -> None:
    alpha = obj.getchannel("A").filter(ImageFilter.GaussianBlur(float(rng.uniform(3, 9))))
    strength = float(rng.uniform(0.25, 0.55))
    shadow = Image.new("RGBA", obj.size, (0, 0, 0, 0))
    shadow.putalpha(alpha.point(lambda v: int(v * strength)))
    offset = int(rng.integers(-12, 13)), int(rng.integers(2, 14))
    scene.paste(shadow, (at[0] + offset[0], at[1] + offset[1]), shadow)


def hand(size: float, rng: np.random.Generator) -> Image.Image:
    """A hand-like occluder about `size` px long: palm, four fingers and a thumb, in a skin tone with
    soft shading, fingers pointing up (rotate it to taste)."""
    s = int(max(16, size))
    canvas_w, canvas_h = int(s * 1.1), int(s * 1.25)
    mask = Image.new("L", (canvas_w, canvas_h), 0)
    draw = ImageDraw.Draw(mask)
    palm_w, palm_h = 0.62 * s, 0.55 * s
    cx, palm_top = canvas_w / 2, canvas_h - palm_h - 0.02 * s
    draw.ellipse((cx - palm_w / 2, palm_top, cx + palm_w / 2, palm_top + palm_h * 1.3), fill=255)
    finger_w = 0.13 * s
    for i in range(4):
        x = cx - palm_w / 2 + finger_w * 0.7 + i * (palm_w - 1.4 * finger_w) / 3
        length = s * (0.42, 0.5, 0.47, 0.36)[i] * float(rng.uniform(0.9, 1.1))
        lean = float(rng.uniform(-0.06, 0.06)) * s + (i - 1.5) * 0.03 * s
        top = (x + lean, palm_top + palm_h * 0.25 - length)
        draw.line((x, palm_top + palm_h * 0.3, *top), fill=255, width=int(finger_w))
        draw.ellipse(
            (top[0] - finger_w / 2, top[1] - finger_w / 2, top[0] + finger_w / 2, top[1] + finger_w / 2), fill=255
        )
    side = 1 if rng.random() < 0.5 else -1
    thumb_base = (cx + side * palm_w * 0.42, palm_top + palm_h * 0.75)
    thumb_tip = (cx + side * palm_w * 0.85, palm_top + palm_h * 0.05)
    draw.line((*thumb_base, *thumb_tip), fill=255, width=int(finger_w * 1.15))
    draw.ellipse(
        (
            thumb_tip[0] - finger_w * 0.57,
            thumb_tip[1] - finger_w * 0.57,
            thumb_tip[0] + finger_w * 0.57,
            thumb_tip[1] + finger_w * 0.57,
        ),
        fill=255,
    )
    mask = mask.filter(ImageFilter.GaussianBlur(max(1.0, s / 160)))
    tone = np.array(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], np.float32) * rng.uniform(0.9, 1.08)
    yy, xx = np.mgrid[0:canvas_h, 0:canvas_w].astype(np.float32)
    angle = float(rng.uniform(0, 2 * np.pi))
    ramp = ((xx * math.cos(angle) + yy * math.sin(angle)) / max(canvas_w, canvas_h)) - 0.5
    shade = 1.0 + 0.28 * ramp + rng.normal(0, 0.015, ramp.shape)
    # Darker where the mask thins out: fingers' edges read as creases rather than a flat sticker.
    edge = np.asarray(mask.filter(ImageFilter.GaussianBlur(max(2.0, s / 40))), np.float32) / 255
    shade *= 0.75 + 0.25 * edge
    rgb = np.clip(tone[None, None, :] * shade[..., None], 0, 255).astype(np.uint8)
    out = Image.fromarray(rgb).convert("RGBA")
    out.putalpha(mask)
    return out


def motion_blur(image: Image.Image, length: float, angle: float) -> Image.Image:
    """Camera shake: the average of the photo shifted along a line `length` px long."""
    steps = max(3, round(length))
    acc = np.zeros((image.height, image.width, 3), np.float32)
    dx, dy = math.cos(angle), math.sin(angle)
    for t in np.linspace(-length / 2, length / 2, steps):
        shifted = image.transform(
            image.size, Image.Transform.AFFINE, (1, 0, t * dx, 0, 1, t * dy), Image.Resampling.BILINEAR, fillcolor=None
        )
        acc += np.asarray(shifted, np.float32)
    # Edge pixels pulled in from outside are black: keep the original there instead.
    margin = math.ceil(length / 2) + 1
    out = acc / steps
    original = np.asarray(image, np.float32)
    out[:margin], out[-margin:], out[:, :margin], out[:, -margin:] = (
        original[:margin],
        original[-margin:],
        original[:, :margin],
        original[:, -margin:],
    )
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def general_noise(photo: Image.Image, rng: np.random.Generator, meta: dict[str, object]) -> Image.Image:
    """Mild changes every query gets: light falloff, colour jitter, a little blur or sensor noise."""
    if rng.random() < 0.4:
        w, h = photo.size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r = np.hypot((xx - w * rng.uniform(0.3, 0.7)) / w, (yy - h * rng.uniform(0.3, 0.7)) / h)
        gain = 1 - float(rng.uniform(0.05, 0.2)) * np.clip(r / 0.7, 0, 1) ** 2
        photo = Image.fromarray(np.clip(np.asarray(photo, np.float32) * gain[..., None], 0, 255).astype(np.uint8))
    for name, enhancer, low, high in (
        ("brightness", ImageEnhance.Brightness, 0.85, 1.15),
        ("contrast", ImageEnhance.Contrast, 0.85, 1.15),
        ("saturation", ImageEnhance.Color, 0.8, 1.2),
    ):
        factor = float(rng.uniform(low, high))
        meta[name] = round(factor * float(meta.get(name, 1.0)), 3)  # type: ignore[arg-type]
        photo = enhancer(photo).enhance(factor)
    blur = float(rng.uniform(0.3, 0.9)) if rng.random() < 0.35 else 0.0
    if blur:
        photo = photo.filter(ImageFilter.GaussianBlur(blur))
    noise = float(rng.uniform(1.5, 4.5)) if rng.random() < 0.5 else 0.0
    meta["blur"], meta["noise"] = round(blur, 2), round(noise + float(meta.get("noise", 0.0)), 2)  # type: ignore[arg-type]
    if noise:
        pixels = np.asarray(photo, np.float32) + rng.normal(0, noise, (photo.height, photo.width, 1))
        photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return photo


def low_light(photo: Image.Image, rng: np.random.Generator, meta: dict[str, object]) -> Image.Image:
    """A dim room: exposure down, a gamma that crushes the shadows, a coloured light, and the coarse
    colour noise of a phone sensor pushed to high ISO."""
    cast = list(CASTS)[int(rng.integers(len(CASTS)))]
    strength = float(rng.uniform(0.6, 1.0))
    gains = np.array([1 + strength * (g - 1) for g in CASTS[cast]], np.float32)
    exposure = float(rng.uniform(0.35, 0.6))
    gamma = float(rng.uniform(1.2, 1.7))
    pixels = np.asarray(photo, np.float32) / 255
    pixels = (pixels**gamma) * exposure * gains
    sigma = float(rng.uniform(4, 9))
    small = rng.normal(0, sigma, (photo.height // 2 + 1, photo.width // 2 + 1, 3)).astype(np.float32)
    chroma = np.kron(small, np.ones((2, 2, 1), np.float32))[: photo.height, : photo.width]  # blotchy, not per-pixel
    pixels = pixels * 255 + chroma
    meta.update(
        cast=cast,
        cast_strength=round(strength, 2),
        brightness=round(exposure, 3),
        gamma=round(gamma, 2),
        noise=round(sigma, 2),
    )
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def place_inside(
    obj: Image.Image, frame: tuple[int, int], rng: np.random.Generator, off_centre: bool = False
) -> tuple[int, int]:
    """A random position fully inside the frame; `off_centre`: the object's centre at least 22 % of the
    frame away from the frame's centre (a product in a corner, not where the camera aimed)."""
    span_x, span_y = max(0, frame[0] - obj.width), max(0, frame[1] - obj.height)
    for _ in range(50):
        x, y = int(rng.integers(0, span_x + 1)), int(rng.integers(0, span_y + 1))
        if not off_centre:
            return x, y
        cx, cy = (x + obj.width / 2) / frame[0] - 0.5, (y + obj.height / 2) / frame[1] - 0.5
        if math.hypot(cx, cy) >= 0.22:
            return x, y
    return x, y


@dataclass
class QueryPlan:
    """Everything a query needs that comes from the pools (decided in the main process)."""

    query_id: str
    product_id: str
    kind: str
    seed: Sequence[int]
    target: Image.Image
    background: Image.Image  # already cropped to the frame
    background_name: str
    others: list[Image.Image]  # other objects: an occluder (occluded) or more products (multi)


def compose(plan: QueryPlan) -> tuple[bytes, dict[str, object]]:
    """One shopper photo of the plan's product with its kind of variation; the JPEG and its meta row."""
    rng = np.random.default_rng(list(plan.seed))
    scene = plan.background.copy()
    frame = scene.size
    kind = plan.kind
    meta: dict[str, object] = {
        "query_id": plan.query_id,
        "variation": kind,
        "width": frame[0],
        "height": frame[1],
        "background": plan.background_name,
    }
    if kind == "rotated":
        rotation = float(rng.uniform(30, 80)) * (1 if rng.random() < 0.5 else -1)
        if rng.random() < 0.2:
            rotation = float(rng.uniform(160, 200))  # upside down: a product lying on the counter
        perspective = float(rng.uniform(0.12, 0.22))
    else:
        rotation, perspective = float(rng.uniform(-10, 10)), float(rng.uniform(0, 0.06))
    obj = tilt(plan.target, rotation, perspective, rng)
    extent = {
        "small": float(rng.uniform(0.10, 0.25)),
        "cut": float(rng.uniform(0.5, 0.85)),
        "multi": float(rng.uniform(0.3, 0.5)),
        "occluded": float(rng.uniform(0.35, 0.7)),
    }.get(kind, float(rng.uniform(0.35, 0.75)))
    obj = fitted(obj, extent, frame)
    meta.update(extent=round(extent, 3), rotation=round(rotation, 1), perspective=round(perspective, 3))
    visible = 1.0
    if kind == "cut":
        at, visible = _cut_position(obj, frame, float(rng.uniform(0.55, 0.8)), rng)
    else:
        at = place_inside(obj, frame, rng, off_centre=kind == "small")
    shadowed = rng.random() < 0.5
    if kind == "multi":
        _paste_others(scene, obj, at, plan.others, rng, meta)
    if shadowed:
        drop_shadow(scene, obj, at, rng)
    scene.paste(obj, at, obj)
    meta.update(shadow=int(shadowed), visible=round(visible, 3))
    meta["box"] = _box_in_frame(obj, at, frame, mirrored=kind == "mirrored")
    meta.setdefault("others", 0)
    meta["occluder"], meta["occlusion"] = "", 0.0
    if kind == "occluded":
        _occlude(scene, obj, at, plan.others, rng, meta)
    photo = scene.convert("RGB")
    meta["mirrored"] = int(kind == "mirrored")
    if kind == "mirrored":
        photo = ImageOps.mirror(photo)  # a front camera's selfie view: the whole photo flipped
    meta["motion_blur"] = 0.0
    if kind == "motion_blur":
        length = float(rng.uniform(9, 22)) * max(frame) / 640
        photo = motion_blur(photo, length, float(rng.uniform(0, math.pi)))
        meta["motion_blur"] = round(length, 1)
    meta.update(cast="", cast_strength=0.0, gamma=1.0)
    if kind == "low_light":
        photo = low_light(photo, rng, meta)
    photo = general_noise(photo, rng, meta)
    quality = int(rng.integers(30, 61)) if kind == "low_light" else int(rng.integers(40, 81))
    meta["jpeg_q"] = quality
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue(), meta


def _box_in_frame(obj: Image.Image, at: tuple[int, int], frame: tuple[int, int], mirrored: bool) -> str:
    """The product's visible box in the photo, "left top right bottom" in pixels (for studies of framing)."""
    alpha = obj.getchannel("A").point(lambda a: 255 if a > 128 else 0).getbbox() or (0, 0, obj.width, obj.height)
    left, top = max(0, at[0] + alpha[0]), max(0, at[1] + alpha[1])
    right, bottom = min(frame[0], at[0] + alpha[2]), min(frame[1], at[1] + alpha[3])
    if mirrored:
        left, right = frame[0] - right, frame[0] - left
    return f"{left} {top} {right} {bottom}"


def _cut_position(
    obj: Image.Image, frame: tuple[int, int], keep: float, rng: np.random.Generator
) -> tuple[tuple[int, int], float]:
    """A position where the frame's edge (or a corner) cuts the object so that about `keep` of it shows."""
    total = float((np.asarray(obj.getchannel("A")) > 128).sum()) or 1.0
    best, best_gap, best_shown = (0, 0), 2.0, 1.0
    for _ in range(40):
        edge = int(rng.integers(0, 4))
        corner = rng.random() < 0.25
        cut = float(rng.uniform(0.15, 0.6))
        x = int(rng.integers(0, max(1, frame[0] - obj.width) + 1))
        y = int(rng.integers(0, max(1, frame[1] - obj.height) + 1))
        if edge == 0 or (corner and edge == 2):
            x = -int(cut * obj.width)
        if edge == 1:
            x = frame[0] - int((1 - cut) * obj.width)
        if edge == 2 or (corner and edge == 0):
            y = -int(cut * obj.height)
        if edge == 3:
            y = frame[1] - int((1 - cut) * obj.height)
        shown = float(mask_in_frame(obj, (x, y), frame).sum()) / total
        gap = abs(shown - keep)
        if gap < best_gap:
            best, best_gap, best_shown = (x, y), gap, shown
        if gap < 0.03:
            break
    return best, best_shown


def _paste_others(
    scene: Image.Image,
    obj: Image.Image,
    at: tuple[int, int],
    others: Sequence[Image.Image],
    rng: np.random.Generator,
    meta: dict[str, object],
) -> None:
    """Other products beside the target, each smaller than it (60-95 %), overlapping its box little."""
    frame = scene.size
    target = mask_in_frame(obj, at, frame)
    placed = 0
    for other in others:
        item = tilt(other, float(rng.uniform(-15, 15)), float(rng.uniform(0, 0.05)), rng)
        item = resized(item, max(obj.size) * float(rng.uniform(0.6, 0.95)))
        for _ in range(30):
            where = place_inside(item, frame, rng)
            overlap = float((mask_in_frame(item, where, frame) & target).sum()) / max(1.0, float(target.sum()))
            if overlap < 0.08:
                drop_shadow(scene, item, where, rng)
                scene.paste(item, where, item)
                placed += 1
                break
    meta["others"] = placed


def _occlude(
    scene: Image.Image,
    obj: Image.Image,
    at: tuple[int, int],
    others: Sequence[Image.Image],
    rng: np.random.Generator,
    meta: dict[str, object],
) -> None:
    """Cover 20-50 % of the product's visible pixels with a hand (60 %) or another object."""
    frame = scene.size
    target = mask_in_frame(obj, at, frame)
    area = max(1.0, float(target.sum()))
    wanted = float(rng.uniform(0.2, 0.5))
    use_hand = rng.random() < 0.6 or not others
    best: tuple[Image.Image, tuple[int, int]] | None = None
    best_gap, best_cover = 2.0, 0.0
    for attempt in range(40):
        if use_hand:
            occluder = hand(max(obj.size) * float(rng.uniform(0.7, 1.3)), rng)
            occluder = occluder.rotate(float(rng.uniform(-180, 180)), expand=True, resample=Image.Resampling.BICUBIC)
        else:
            occluder = tilt(others[0], float(rng.uniform(-40, 40)), 0.03, rng)
            occluder = resized(occluder, max(obj.size) * float(rng.uniform(0.5, 1.0)))
        cx = at[0] + obj.width * float(rng.uniform(-0.1, 1.1))
        cy = at[1] + obj.height * float(rng.uniform(-0.1, 1.1))
        where = (int(cx - occluder.width / 2), int(cy - occluder.height / 2))
        cover = float((mask_in_frame(occluder, where, frame) & target).sum()) / area
        if abs(cover - wanted) < best_gap:
            best, best_gap, best_cover = (occluder, where), abs(cover - wanted), cover
        if best_gap < 0.03 and attempt >= 2:
            break
    assert best is not None
    occluder, where = best
    if use_hand:
        drop_shadow(scene, occluder, where, rng)
    scene.paste(occluder, where, occluder)
    meta["occluder"], meta["occlusion"] = ("hand" if use_hand else "object"), round(best_cover, 3)


# --------------------------------------------------------------------------- the dataset


META_COLUMNS = (
    "query_id",
    "variation",
    "width",
    "height",
    "background",
    "extent",
    "rotation",
    "perspective",
    "shadow",
    "visible",
    "occluder",
    "occlusion",
    "others",
    "mirrored",
    "motion_blur",
    "cast",
    "cast_strength",
    "gamma",
    "brightness",
    "contrast",
    "saturation",
    "blur",
    "noise",
    "jpeg_q",
    "box",
)


@dataclass(frozen=True)
class Config:
    out: Path
    seed: int
    products: int
    query_products: int
    distractors: int
    root: Path
    fixtures: Path | None
    workers: int
    progress: bool


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def _load_background(source: Source) -> Image.Image:
    image = render(source.path, 1920).convert("RGB")
    image.thumbnail((1920, 1920), Image.Resampling.LANCZOS)  # enough for a 640 px frame's crops
    return image


def build(config: Config, log: Callable[[str], None]) -> dict[str, object]:
    """Make the dataset in config.out (replacing what was there); returns the figures the README states."""
    started = time.perf_counter()
    rng = np.random.default_rng([config.seed, 0])
    products, distractors, backgrounds = discover(config.root, config.fixtures)
    log(f"candidates: {len(products)} products, {len(distractors)} distractors, {len(backgrounds)} backgrounds")
    if not products or not backgrounds:
        raise SystemExit(
            "no product or background images found: install the packages the README lists "
            "(apt-get install -y "
            + " ".join(
                sorted({p[0] for p in PRODUCT_PACKAGES + DISTRACTOR_PACKAGES} | {b[0] for b in BACKGROUND_GLOBS})
            )
            + " librsvg2-bin) or pass --fixtures"
        )
    product_cutouts = load_all(products, PRODUCT_SIDE, 96, config.workers, config.progress, "products")
    distractor_cutouts = load_all(distractors, DISTRACTOR_SIDE, 48, config.workers, config.progress, "distractors")
    order = rng.permutation(len(product_cutouts))
    catalog = deduplicate([product_cutouts[i] for i in order], 0.94)[: config.products]
    order = rng.permutation(len(distractor_cutouts))
    extra = deduplicate([distractor_cutouts[i] for i in order], 0.94, against=catalog, against_threshold=0.91)[
        : config.distractors
    ]
    log(
        f"kept {len(catalog)} products of {len(product_cutouts)} usable, {len(extra)} distractors of {len(distractor_cutouts)}"
    )
    for cutout in catalog + extra:
        cutout.product_id = opaque_id("p", "judge", cutout.source.package, cutout.source.rel)
    if len({c.product_id for c in catalog + extra}) != len(catalog) + len(extra):
        raise SystemExit("product id collision: change the id salt")

    if config.out.exists():
        shutil.rmtree(config.out)
    for folder in ("catalog", "queries", "distractors"):
        (config.out / folder).mkdir(parents=True)
    shots = [(c, "catalog", PRODUCT_SIDE) for c in catalog] + [(c, "distractors", DISTRACTOR_SIDE) for c in extra]
    for index, (cutout, folder, side) in enumerate(
        tqdm(shots, desc="catalog shots", unit="img", disable=not config.progress, file=sys.stderr)
    ):
        shot = catalog_shot(cutout.image, side, np.random.default_rng([config.seed, 1, index]))
        shot.save(config.out / folder / f"{cutout.product_id}.jpg", "JPEG", quality=90)

    def item_row(c: Cutout, folder: str) -> dict[str, object]:
        return {
            "product_id": c.product_id,
            "title": c.source.title,
            "category": c.source.category,
            "image": f"{folder}/{c.product_id}.jpg",
        }

    item_columns = ("product_id", "title", "category", "image")
    _write_csv(
        config.out / "catalog.csv",
        item_columns,
        sorted((item_row(c, "catalog") for c in catalog), key=lambda r: str(r["product_id"])),
    )
    _write_csv(
        config.out / "distractors.csv",
        item_columns,
        sorted((item_row(c, "distractors") for c in extra), key=lambda r: str(r["product_id"])),
    )
    _write_csv(
        config.out / "sources.csv",
        ("product_id", "role", "package", "source"),
        sorted(
            [
                dict[str, object](
                    product_id=c.product_id, role="catalog", package=c.source.package, source=c.source.rel
                )
                for c in catalog
            ]
            + [
                dict[str, object](
                    product_id=c.product_id, role="distractor", package=c.source.package, source=c.source.rel
                )
                for c in extra
            ],
            key=lambda r: str(r["product_id"]),
        ),
    )

    # Queries: 1 or 2 per query product, kinds in equal shares over all queries, shuffled.
    picked = [
        catalog[i]
        for i in sorted(rng.choice(len(catalog), size=min(config.query_products, len(catalog)), replace=False))
    ]
    per_product = [1 + int(rng.random() < 0.5) for _ in picked]
    total = sum(per_product)
    kinds = [KINDS[i % len(KINDS)] for i in range(total)]
    kinds = [kinds[i] for i in rng.permutation(total)]
    loaded_backgrounds = [
        _load_background(b)
        for b in tqdm(backgrounds, desc="backgrounds", unit="img", disable=not config.progress, file=sys.stderr)
    ]
    pool = list(catalog + extra)
    query_rows: list[dict[str, object]] = []
    meta_rows: list[dict[str, object]] = []
    jobs: list[QueryPlan] = []
    index = 0
    for cutout, count in zip(picked, per_product):
        for _ in range(count):
            kind = kinds[index]
            frame = FRAMES[int(rng.integers(len(FRAMES)))]
            b = int(rng.integers(len(backgrounds)))
            background = background_crop(loaded_backgrounds[b], frame, rng)
            others: list[Image.Image] = []
            wanted = {"occluded": 1, "multi": 1 + int(rng.random() < 0.5)}.get(kind, 0)
            while len(others) < wanted:
                other = pool[int(rng.integers(len(pool)))]
                if other.product_id != cutout.product_id:
                    others.append(other.image)
            query_id = opaque_id("q", "judge", config.seed, index, cutout.product_id)
            name = f"{backgrounds[b].package}/{backgrounds[b].rel}"
            jobs.append(
                QueryPlan(
                    query_id, cutout.product_id, kind, (config.seed, 2, index), cutout.image, background, name, others
                )
            )
            index += 1
    for plan in tqdm(jobs, desc="shopper photos", unit="query", disable=not config.progress, file=sys.stderr):
        jpeg, meta = compose(plan)
        (config.out / "queries" / f"{plan.query_id}.jpg").write_bytes(jpeg)
        query_rows.append(
            {"query_id": plan.query_id, "image": f"queries/{plan.query_id}.jpg", "product_id": plan.product_id}
        )
        meta_rows.append(meta)
    query_rows.sort(key=lambda r: str(r["query_id"]))
    meta_rows.sort(key=lambda r: str(r["query_id"]))
    _write_csv(config.out / "queries.csv", ("query_id", "image", "product_id"), query_rows)
    _write_csv(config.out / "queries_meta.csv", META_COLUMNS, meta_rows)
    figures: dict[str, object] = {
        "catalog": len(catalog),
        "distractors": len(extra),
        "query_products": len(picked),
        "queries": len(query_rows),
        "kinds": dict(sorted(Counter(str(m["variation"]) for m in meta_rows).items())),
        "packages": sorted({c.source.package for c in catalog + extra} | {b.package for b in backgrounds}),
        "by_package": Counter(
            f"{c.source.package} ({'catalog' if c in catalog else 'distractor'})" for c in catalog + extra
        ),
        "backgrounds": [f"{b.package}/{b.rel}" for b in backgrounds],
        "seconds": round(time.perf_counter() - started, 1),
    }
    (config.out / "README.md").write_text(readme(config, figures), encoding="utf-8")
    return figures


def readme(config: Config, figures: dict[str, object]) -> str:
    by_package: Counter[str] = figures["by_package"]  # type: ignore[assignment]
    kinds: dict[str, int] = figures["kinds"]  # type: ignore[assignment]
    packages: list[str] = figures["packages"]  # type: ignore[assignment]
    lines = [
        "# Search-by-photo retrieval benchmark: the judge set",
        "",
        "Generated by `tools/build_judge_set.py` (imagesearch repository) on "
        f"{date.today().isoformat()} with seed {config.seed}, in {figures['seconds']} s. Regenerate it with",
        "",
        "```bash",
        f".venv/bin/python tools/build_judge_set.py --seed {config.seed} --products {config.products} "
        f"--query-products {config.query_products} --distractors {config.distractors}",
        "```",
        "",
        "Same layout, formats and metrics as the dev set (`../shared/datasets/dev/README.md`), built from",
        "**other** Debian packages: no product, distractor or background source is shared with dev",
        "(tuxpaint-stamps, openclipart, plasma-workspace-wallpapers, mate-backgrounds, gnome-backgrounds).",
        "Unlike dev, every query has one main **kind of variation**, named in `queries_meta.csv`'s",
        "`variation` column, and `imagesearch eval` reports Recall per kind.",
        "",
        "## Contents",
        "",
        f"* `catalog/`: {figures['catalog']} products, 512 x 512 JPEG (q 90), the object centred on white (70 %) or light grey (240-248), longest side 78-90 %.",
        f"* `distractors/`: {figures['distractors']} items never the answer, same style at 256 x 256.",
        f"* `queries/`: {figures['queries']} shopper photos of {figures['query_products']} catalog products (1 or 2 each), 640 x 480 or 480 x 640.",
        "* `catalog.csv`, `distractors.csv`: `product_id,title,category,image`; `queries.csv`: `query_id,image,product_id`.",
        "* `queries_meta.csv`: " + ", ".join(f"`{c}`" for c in META_COLUMNS) + ".",
        "* `sources.csv`: `product_id,role,package,source` (the file in the package).",
        "",
        "Titles are the icon names in words. Categories are the icon-naming context (`devices`, `apps`,",
        "`places`, `status`, `categories`, `stock`), followed by the first word of the icon's name",
        "when at least three icons of the context share it (`devices/media`, `places/folder`).",
        "",
        "## Sources and licences",
        "",
        "| package (version) | used for | items | licence (the package's `copyright` file) |",
        "| --- | --- | ---: | --- |",
    ]
    for package in packages:
        counts = [
            f"{n} {k.split('(')[1].rstrip(')')}" for k, n in sorted(by_package.items()) if k.startswith(package + " ")
        ]
        role = (
            "catalog products"
            if any("catalog" in c for c in counts)
            else "distractors"
            if counts
            else "query backgrounds"
        )
        backgrounds = [b for b in figures["backgrounds"] if str(b).startswith(package + "/")]  # type: ignore[attr-defined]
        items = ", ".join(counts) if counts else f"{len(backgrounds)} backgrounds"
        lines.append(
            f"| `{package}` ({package_version(package)}) | {role} | {items} | {LICENCES.get(package, 'see the package')} |"
        )
    lines += [
        "",
        "Every image here is derived from those files: keep the attributions when passing them on.",
        "Selection: icon contexts that show objects (apps, categories, devices, places/filesystems,",
        "status, gartoon's stock); symlinked aliases counted once; trimmed objects at least 96 px (products) or",
        "48 px (distractors), no wisp-like icons (aspect > 3.5 or under 20 % of their box filled).",
        "Near-duplicates (24 x 24 colour thumbnails, mean removed, cosine >= 0.94, mirrored copies included)",
        "are clustered and one is kept; distractors within 0.91 of a product are dropped.",
        "",
        "Backgrounds: " + ", ".join(f"`{b}`" for b in figures["backgrounds"]) + ".",  # type: ignore[attr-defined]
        "",
        "## How the queries are made",
        "",
        "Every query: a random crop (40-100 % of the largest crop) of a background, mirrored half the time;",
        "the product's cut-out, tilted (rotation +-10 deg, corner shifts up to 6 %), scaled to an extent",
        "(`max(w/W, h/H)`) of 35-75 %, placed at random inside the frame, with a soft drop shadow half the",
        "time. Then mild general noise: a light fall-off (40 %), brightness / contrast 0.85-1.15, saturation",
        "0.8-1.2, a Gaussian blur of 0.3-0.9 px (35 %), luminance noise of 1.5-4.5 levels (50 %), JPEG 40-80.",
        "",
        "The main kind of variation, one per query, in equal shares:",
        "",
        "| variation | queries | what changes |",
        "| --- | ---: | --- |",
        f"| `clean` | {kinds.get('clean', 0)} | nothing more: the control group |",
        f"| `occluded` | {kinds.get('occluded', 0)} | 20-50 % of the product's pixels covered (the share achieved is `occlusion`): a hand-like shape in a skin tone (60 %) or another catalog/distractor object; extent 35-70 % |",
        f"| `small` | {kinds.get('small', 0)} | extent 10-25 %, centre at least 22 % of the frame away from its centre |",
        f"| `mirrored` | {kinds.get('mirrored', 0)} | the whole photo flipped left-right, as a front camera shows it |",
        f"| `rotated` | {kinds.get('rotated', 0)} | rotation 30-80 deg either way (20 %: 160-200 deg, upside down) and corner shifts of 12-22 % |",
        f"| `motion_blur` | {kinds.get('motion_blur', 0)} | camera shake: a linear blur 9-22 px long (at 640 px) in a random direction |",
        f"| `low_light` | {kinds.get('low_light', 0)} | exposure x0.35-0.6, gamma 1.2-1.7, a tungsten / fluorescent / shade colour cast, blotchy colour noise of 4-9 levels, JPEG 30-60 |",
        f"| `cut` | {kinds.get('cut', 0)} | extent 50-85 %, the frame's edge or a corner cuts off 20-45 % of the product (`visible` is the share left) |",
        f"| `multi` | {kinds.get('multi', 0)} | 1-2 other catalog or distractor objects beside the product, each 60-95 % of its size, barely overlapping it; extent 30-50 % |",
        "",
        "The recipe was written apart from `imagesearch adapt`'s synthetic views (no shared code, other",
        "parameters, other backgrounds), so a method tuned on those views is not rewarded here for that.",
        "The seed fixes everything: the same command writes the same files.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/build_judge_set.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""\
sources (Debian 12 packages; install them once):
  apt-get update && apt-get install -y librsvg2-bin oxygen-icon-theme gnome-icon-theme \\
      gnome-icon-theme-gartoon faenza-icon-theme elementary-icon-theme tango-icon-theme moka-icon-theme \\
      lomiri-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 ukui-wallpapers desktop-base

examples:
  .venv/bin/python tools/build_judge_set.py                    # var/datasets/judge (a few minutes on 2 cores)
  .venv/bin/imagesearch eval var/datasets/judge --out judge.json   # Recall overall and per variation
  .venv/bin/python tools/build_judge_set.py --fixtures my_images/ --products 10 --out /tmp/tiny
      # my_images/products/<category>/*.png|svg, my_images/distractors/<category>/..., my_images/backgrounds/*

The output is not part of the repository (var/ is ignored); the bootstrap does not build it.
""",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output folder, replaced if it exists (default {DEFAULT_OUT.relative_to(REPO)})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"random seed; the same seed writes the same set (default {DEFAULT_SEED})",
    )
    parser.add_argument("--products", type=int, default=360, help="catalog products (default 360)")
    parser.add_argument(
        "--query-products", type=int, default=250, help="catalog products with queries, 1-2 each (default 250)"
    )
    parser.add_argument("--distractors", type=int, default=1000, help="distractor items (default 1000)")
    parser.add_argument(
        "--fixtures",
        type=Path,
        help="build from this folder (products/, distractors/, backgrounds/) instead of the Debian packages",
    )
    parser.add_argument("--root", type=Path, default=Path("/"), help="where the packages' files are (default /)")
    parser.add_argument("--workers", type=int, default=2, help="processes rendering the sources (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = Config(
        out=args.out.resolve(),
        seed=args.seed,
        products=args.products,
        query_products=args.query_products,
        distractors=args.distractors,
        root=args.root,
        fixtures=args.fixtures,
        workers=args.workers,
        progress=not args.no_progress,
    )
    figures = build(config, lambda line: print(line, file=sys.stderr))
    print(
        f"wrote {config.out}: {figures['catalog']} products, {figures['distractors']} distractors, "
        f"{figures['queries']} queries {figures['kinds']} in {figures['seconds']} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
