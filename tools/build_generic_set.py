"""Build the generic product collection that the base model's whitening is learned from.

A fresh clone serves the backbone with a *generic* learned whitening on top (`--fit-into`: `imagesearch
adapt` on this collection, as version 3, to DIMENSION dims): fitted on synthetic photos of objects that belong to no benchmark and no catalog, so the
model is more robust to backgrounds, light and framing before anyone adapts it to their own catalog.
The objects are the object-like pictures of Debian's `fonts-noto-color-emoji` (food, animals, plants,
vehicles, tools, instruments, sports gear, household things), each drawn as a catalog shot: on white,
its longest side 84 % of a 512 px square. Faces, people, hands, flags, signs and symbols are left out
(they are not products). Neither the dev set (tuxpaint, openclipart) nor the judge set (icon themes)
uses this package.

The output folder holds catalog/<id>.jpg, catalog.csv (product_id,title,category,image, as dev's) and
a README.md with the source and its licence; the same package version gives the same files.

    python tools/build_generic_set.py                 # -> var/datasets/generic
    python tools/build_generic_set.py --fit-into model_repo   # ... then fit version 3 from it (~6 min)
    apt-get install fonts-noto-color-emoji            # where the font is missing
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "var" / "datasets" / "generic"
PACKAGE = "fonts-noto-color-emoji"
FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
# The font's bitmaps are 136 px, drawn at size 109; they are scaled up to the catalog shot's size.
FONT_SIZE = 109
SIDE = 512
EXTENT = 0.84
# Code point blocks holding objects: Miscellaneous Symbols and Pictographs (food, animals, plants, objects),
# Transport and Map Symbols, Supplemental Symbols and Pictographs, Symbols and Pictographs Extended-A,
# Miscellaneous Symbols.
BLOCKS = ((0x1F330, 0x1F3FF), (0x1F400, 0x1F53D), (0x1F549, 0x1F5FF), (0x1F680, 0x1F6FF), (0x1F90C, 0x1F9FF))
BLOCKS += ((0x1FA70, 0x1FAFF), (0x2600, 0x26FF))
# Pictures of these are not products (words of the character's Unicode name).
NOT_PRODUCTS = ("FACE", "HAND", "PERSON", "MAN", "WOMAN", "BOY", "GIRL", "FINGER", "SIGN", "SYMBOL", "ARROW")
NOT_PRODUCTS += ("BUTTON", "CIRCLE", "SQUARE", "KEYCAP", "LETTER", "FLAG")
# The generic whitening's dimensions (`imagesearch adapt <collection> --dimension`; scripts/bootstrap.sh and
# deploy/model.Dockerfile fit it with --fit-into): more than a catalog's own 512, since its PCA step saw
# other products (docs/quality.md).
DIMENSION = 1024
# The model version it is written as: the served default of a fresh clone (2 is the bare backbone).
VERSION = 3
# The exit status when the source font is missing (the bootstrap then serves version 2); any other
# failure is 1, or `imagesearch adapt`'s own status.
NO_SOURCE = 3
# Glyphs whose drawn object is smaller than this (px, of 136) are marks, not objects.
MIN_DRAWN = 20


class GenericSetError(RuntimeError):
    """The source font is missing; the message says how to install it."""


def is_product(name: str) -> bool:
    words = set(name.replace("-", " ").split())
    return not words & set(NOT_PRODUCTS)


def drawn(character: str, font: ImageFont.FreeTypeFont) -> Image.Image | None:
    """The glyph in colour on a transparent canvas, trimmed to it; None where the font has none."""
    canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    # Colour fonts ignore the fill; a plain font (the tests') draws in black.
    ImageDraw.Draw(canvas).text((8, 8), character, font=font, fill=(0, 0, 0, 255), embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    return glyph if min(glyph.size) >= MIN_DRAWN else None


def catalog_shot(glyph: Image.Image) -> Image.Image:
    scale = SIDE * EXTENT / max(glyph.size)
    size = (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale)))
    glyph = glyph.resize(size, Image.Resampling.BICUBIC)
    shot = Image.new("RGB", (SIDE, SIDE), (255, 255, 255))
    shot.paste(glyph, ((SIDE - size[0]) // 2, (SIDE - size[1]) // 2), glyph)
    return shot


def package_version() -> str:
    try:
        return subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", PACKAGE], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def build(out: Path, font_path: Path = FONT, blocks: Sequence[tuple[int, int]] = BLOCKS) -> int:
    """Write the collection of `blocks`' object characters to `out`; returns the number of products."""
    if not font_path.is_file():
        raise GenericSetError(f"{font_path} not found: install it with `apt-get install {PACKAGE}` (as root)")
    font = ImageFont.truetype(str(font_path), FONT_SIZE)
    (out / "catalog").mkdir(parents=True, exist_ok=True)
    rows = []
    for first, last in blocks:
        for point in range(first, last + 1):
            name = unicodedata.name(chr(point), "")
            if not name or not is_product(name):
                continue
            glyph = drawn(chr(point), font)
            if glyph is None:
                continue
            product_id = f"g{point:08x}"
            catalog_shot(glyph).save(out / "catalog" / f"{product_id}.jpg", quality=90)
            rows.append((product_id, name.capitalize(), "generic", f"catalog/{product_id}.jpg"))
    with (out / "catalog.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("product_id", "title", "category", "image"))
        writer.writerows(rows)
    (out / "README.md").write_text(
        "# Generic products for the base model's whitening\n\n"
        f"{len(rows)} catalog shots drawn by `tools/build_generic_set.py` from Debian's `{PACKAGE}` "
        f"({package_version()}): the Noto Color Emoji pictures of objects, each on white, its longest side "
        f"{EXTENT:.0%} of a {SIDE} px square. The pictures are under the Apache License 2.0 and the font under "
        "the SIL Open Font License 1.1 (the package's copyright file); keep the attribution if you pass them on.\n"
    )
    return len(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument(
        "--fit-into",
        type=Path,
        metavar="MODEL_REPO",
        help=f"then learn the generic whitening from the collection into this model repository, as version "
        f"{VERSION} with {DIMENSION} dims (`imagesearch adapt`; ~6 minutes on 2 cores)",
    )
    args = parser.parse_args(argv)
    try:
        count = build(args.out)
    except GenericSetError as err:
        print(f"build_generic_set: {err}", file=sys.stderr)
        return NO_SOURCE
    print(f"generic set: {count} products in {args.out}")
    if args.fit_into is None:
        return 0
    return fit(args.out, args.fit_into)


def fit(collection: Path, model_repo: Path) -> int:
    """`imagesearch adapt` on the collection: the recipe of the served default, in one place."""
    from imagesearch.cli.main import main as imagesearch

    argv = ["adapt", str(collection), "--model-repo", str(model_repo), "--version", str(VERSION)]
    return imagesearch([*argv, "--dimension", str(DIMENSION), "--no-progress"])


if __name__ == "__main__":
    sys.exit(main())
