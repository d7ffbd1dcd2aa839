"""Contact sheets: the query and its results in one PNG, for eyeballing search quality.

Layout: the query on the left (with the search region drawn on it), the hits
in a grid on the right, each tile captioned with rank, score, title and
product id. Result images are read from the hit's `image_uri` when it names a
readable local file (`imagesearch index` stores absolute paths); anything
else (a URL, the default "<product_id>#<n>", a file that moved) becomes a
grey placeholder, so a sheet always renders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from PIL import Image, ImageDraw, ImageFont, ImageOps

BACKGROUND = (255, 255, 255)
TILE_BACKGROUND = (246, 246, 246)
PLACEHOLDER = (200, 200, 200)
BORDER = (215, 215, 215)
TEXT = (20, 20, 20)
MUTED = (110, 110, 110)
REGION = (230, 30, 30)
OBJECT = (20, 120, 230)  # the photo's other objects
GOOD_SCORE = (20, 130, 60)


# What Pillow's font loaders return: a TrueType font, or the bundled bitmap one.
Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


class HitLike(Protocol):
    """What a tile needs; `SearchHit` messages and `Hit` dataclasses both fit."""

    product_id: str
    score: float
    title: str
    image_uri: str


@dataclass(frozen=True)
class SheetLayout:
    tile: int = 200  # square image area of a result tile, px
    query_width: int = 360  # the query panel's image box, px
    margin: int = 16
    gap: int = 12
    caption_lines: int = 3
    font_size: int = 13
    max_columns: int = 5


def local_image_path(uri: str) -> Path | None:
    """The readable local file `uri` names (a path or file:// URL), else None."""
    if not uri:
        return None
    if uri.startswith("file://"):
        uri = unquote(urlparse(uri).path)
    elif "://" in uri:
        return None
    path = Path(uri).expanduser()
    return path if path.is_file() else None


def load_image(uri_or_path: str | Path | None) -> Image.Image | None:
    """The image, upright (EXIF orientation applied) and RGB; None when unreadable."""
    path = local_image_path(str(uri_or_path)) if uri_or_path else None
    if path is None:
        return None
    try:
        with Image.open(path) as img:
            return ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


# Tried before Pillow's bundled font, which has no glyphs beyond Latin-1 (a "€" in a
# title would render as a box); found by name in the system font folders.
_PREFERRED_FONTS = {False: "DejaVuSans.ttf", True: "DejaVuSans-Bold.ttf"}


@cache
def font(size: int, bold: bool = False) -> Font:
    try:
        return ImageFont.truetype(_PREFERRED_FONTS[bold], size)
    except OSError:
        pass
    try:
        return ImageFont.load_default(size=size)  # scalable font, Pillow >= 10.1
    except TypeError:
        return ImageFont.load_default()


def fit_text(draw: ImageDraw.ImageDraw, text: str, fnt: Font, width: int) -> str:
    """`text` cut with an ellipsis so it renders within `width` pixels."""
    if draw.textlength(text, font=fnt) <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if draw.textlength(text[:mid] + "…", font=fnt) <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "…"


def contain(img: Image.Image, box: int) -> Image.Image:
    """`img` scaled (up or down) to fit a `box` x `box` square, aspect kept."""
    return ImageOps.contain(img, (box, box), Image.Resampling.LANCZOS)


def placeholder(size: int, label: str, fnt: Font) -> Image.Image:
    tile = Image.new("RGB", (size, size), PLACEHOLDER)
    draw = ImageDraw.Draw(tile)
    text = fit_text(draw, label, fnt, size - 16)
    draw.text((size / 2, size / 2), text, fill=MUTED, font=fnt, anchor="mm")
    return tile


def draw_region(
    img: Image.Image, region: Sequence[float] | None, objects: Sequence[tuple[int, Sequence[float]]] = ()
) -> Image.Image:
    """A copy of `img` with the relative box (x0, y0, x1, y1) searched outlined, and each other
    object found (index, box) outlined thinner and numbered as `--object` names it."""
    out = img.copy()
    w, h = out.size
    line = max(2, round(min(w, h) / 120))
    draw = ImageDraw.Draw(out)

    def pixels(box: Sequence[float]) -> list[float]:
        x0, y0, x1, y1 = box
        return [x0 * w, y0 * h, max(x0 * w, x1 * w - 1), max(y0 * h, y1 * h - 1)]

    for index, box in objects:
        if region is not None and all(abs(a - b) < 1e-3 for a, b in zip(box, region)):
            continue  # the searched one: drawn below, in red
        corners = pixels(box)
        draw.rectangle(corners, outline=OBJECT, width=max(1, line // 2))
        draw.text((corners[0] + line, corners[1] + line), f"{index}", fill=OBJECT)
    if region is not None:
        draw.rectangle(pixels(region), outline=REGION, width=line)
    return out


def grid_shape(n: int, max_columns: int) -> tuple[int, int]:
    columns = max(1, min(n, max_columns))
    return columns, max(1, math.ceil(n / columns))


def render_contact_sheet(
    out_path: str | Path,
    hits: Sequence[HitLike],
    query: str | Path | Image.Image | None = None,
    region: Sequence[float] | None = None,
    query_label: str = "query",
    subtitle: str = "",
    layout: SheetLayout = SheetLayout(),
    objects: Sequence[tuple[int, Sequence[float]]] = (),
) -> Path:
    """Write the sheet as PNG to `out_path` and return its path."""
    sheet = build_sheet(hits, query, region, query_label, subtitle, layout, objects)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
    return out


def build_sheet(
    hits: Sequence[HitLike],
    query: str | Path | Image.Image | None,
    region: Sequence[float] | None,
    query_label: str,
    subtitle: str,
    layout: SheetLayout,
    objects: Sequence[tuple[int, Sequence[float]]] = (),
) -> Image.Image:
    body, small, bold = font(layout.font_size), font(layout.font_size - 2), font(layout.font_size + 2, bold=True)
    line_h = layout.font_size + 5
    caption_h = layout.caption_lines * line_h + 6
    columns, rows = grid_shape(len(hits), layout.max_columns)
    tile_w, tile_h = layout.tile, layout.tile + caption_h
    header_h = 2 * line_h + 8

    grid_w = columns * tile_w + (columns - 1) * layout.gap
    grid_h = rows * tile_h + (rows - 1) * layout.gap
    query_panel_h = layout.query_width + 3 * line_h
    width = layout.margin * 3 + layout.query_width + grid_w
    height = layout.margin * 2 + header_h + max(grid_h, query_panel_h)

    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    top = layout.margin + header_h
    draw.text((layout.margin, layout.margin), "query", fill=TEXT, font=bold)
    grid_x = layout.margin * 2 + layout.query_width
    heading = f"{len(hits)} result{'s' if len(hits) != 1 else ''}" + (f"  ·  {subtitle}" if subtitle else "")
    draw.text((grid_x, layout.margin), fit_text(draw, heading, bold, grid_w), fill=TEXT, font=bold)

    canvas = _Canvas(sheet, draw, layout, body, small, line_h)
    _paste_query(canvas, query, region, query_label, (layout.margin, top), objects)
    if not hits:
        draw.text((grid_x, top), "no results", fill=MUTED, font=body)
    for i, hit in enumerate(hits):
        x = grid_x + (i % columns) * (tile_w + layout.gap)
        y = top + (i // columns) * (tile_h + layout.gap)
        _paste_tile(canvas, i + 1, hit, (x, y))
    return sheet


@dataclass(frozen=True)
class _Canvas:
    """The sheet being drawn, and what every panel draws with."""

    sheet: Image.Image
    draw: ImageDraw.ImageDraw
    layout: SheetLayout
    body: Font
    small: Font
    line_h: int

    def framed(self, shown: Image.Image, x: int, y: int, box: int) -> None:
        """`shown` centred in a `box` x `box` frame whose top left corner is (x, y)."""
        self.draw.rectangle([x - 1, y - 1, x + box, y + box], fill=TILE_BACKGROUND, outline=BORDER)
        self.sheet.paste(shown, (x + (box - shown.width) // 2, y + (box - shown.height) // 2))


def _paste_query(
    c: _Canvas,
    query: str | Path | Image.Image | None,
    region: Sequence[float] | None,
    label: str,
    at: tuple[int, int],
    objects: Sequence[tuple[int, Sequence[float]]] = (),
) -> None:
    x, y = at
    box = c.layout.query_width
    img = query if isinstance(query, Image.Image) else load_image(query)
    if img is None:
        shown = placeholder(box, "query image not available", c.body)
    else:
        shown = contain(draw_region(img, region, objects) if region or objects else img, box)
    c.framed(shown, x, y, box)
    c.draw.text((x, y + box + 6), fit_text(c.draw, label, c.body, box), fill=TEXT, font=c.body)
    if region:
        coords = ", ".join(f"{v:.2f}" for v in region)
        c.draw.text((x, y + box + 6 + c.line_h), f"searched ({coords})", fill=REGION, font=c.small)


def _paste_tile(c: _Canvas, rank: int, hit: HitLike, at: tuple[int, int]) -> None:
    x, y = at
    size = c.layout.tile
    img = load_image(hit.image_uri)
    c.framed(contain(img, size) if img is not None else placeholder(size, "image not available", c.small), x, y, size)
    ty = y + size + 5
    rank_text = f"#{rank}"
    c.draw.text((x, ty), rank_text, fill=TEXT, font=c.body)
    score_x = x + c.draw.textlength(rank_text + "  ", font=c.body)
    c.draw.text((score_x, ty), f"{hit.score:.3f}", fill=GOOD_SCORE if hit.score >= 0.8 else TEXT, font=c.body)
    c.draw.text((x, ty + c.line_h), fit_text(c.draw, hit.title or "(untitled)", c.body, size), fill=TEXT, font=c.body)
    c.draw.text((x, ty + 2 * c.line_h), fit_text(c.draw, hit.product_id, c.small, size), fill=MUTED, font=c.small)
