#!/usr/bin/env python3
"""Build the small demo catalog in ``demo/`` from the ``dev`` benchmark set.

The source is the search-by-photo development set in ``../shared/datasets/dev``
(relative to the repository root). This script copies a deterministic subset of
it, byte for byte (no re-encoding), into ``demo/``:

* ``demo/catalog/<product_id>.jpg``: every catalog product that has a shopper
  query, topped up with products of the other categories (stratified, so that
  as many categories as possible appear), plus a few extra items taken from the
  dataset's distractors. In the demo they are all ordinary catalog items.
* ``demo/catalog.csv``: ``product_id,title,category,brand,price,image,attributes``.
  ``brand`` and ``price`` are ILLUSTRATIVE values derived from a hash of the
  product id (the dataset has neither). ``attributes`` holds a colour only when
  the product title states it plainly, otherwise ``{}``.
* ``demo/queries/<query_id>.jpg`` and ``demo/queries.csv``
  (``query_id,image,product_id``): shopper-style photos of demo products.
* ``demo/sources.csv``: where every copied image comes from (Debian package and
  file), for attribution.
* ``demo/README.md``: provenance and licences.

The output depends only on the source files and ``--seed``; running it twice
gives identical files. Stale ``*.jpg`` files in ``demo/catalog`` and
``demo/queries`` are removed first, nothing else in ``demo/`` is touched.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import re
import shutil
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "datasets" / "dev"
DEFAULT_OUT = REPO_ROOT / "demo"

# Illustrative, made-up brand names. They are NOT real product data.
BRANDS = (
    "Alderbrook",
    "Brightfield",
    "Copperline",
    "Dunmore",
    "Everhart",
    "Foxglove",
    "Greywater",
    "Hollowell",
    "Ironbark",
    "Juniper Lane",
    "Kestrel",
    "Larkspur",
)

# Distractor categories that do not look like products one would sell (icons,
# maps, people, warning signs, unsorted clip art). They are skipped when
# picking distractors for the demo catalog.
NON_PRODUCT_DISTRACTOR_CATEGORIES = frozenset(
    {
        "computer/icons",
        "computer/folders",
        "geography",
        "geography/astronomy",
        "people",
        "people/bodypart",
        "signs_and_symbols",
        "signs_and_symbols/awards",
        "signs_and_symbols/hazard",
        "signs_and_symbols/weather",
        "unsorted",
    }
)

# Colour words recognised in titles.
COLOURS = (
    "black",
    "blue",
    "brown",
    "gold",
    "green",
    "grey",
    "gray",
    "orange",
    "pink",
    "purple",
    "red",
    "silver",
    "white",
    "yellow",
)
# "A <colour> <noun>." or "<Colour> <adjective> <noun>." (tuxpaint description
# sentences). A capitalised colour after the article ("A Silver Gull.", "A
# White Star Petunia.") is part of a proper name, so the colour must be lower
# case unless it starts the title.
_COLOUR_ALT = "|".join(COLOURS)
_COLOUR_TITLE = re.compile(
    rf"^(?:(?:An?|The) (?P<c1>{_COLOUR_ALT})|(?P<c2>(?i:{_COLOUR_ALT}))) [a-z][a-z-]*(?: [a-z][a-z-]*)?\.$"
)
# Titles where the colour word is part of a species name, not the colour of
# the item ("A blue gnu." is the blue wildebeest).
_COLOUR_EXCLUDED_NOUNS = frozenset({"gnu"})

# Credits of the query photo backgrounds, read from the Debian packages'
# copyright files (and, for KDE, the per-wallpaper metadata.json).
BACKGROUND_CREDITS = {
    "plasma-workspace-wallpapers/usr/share/wallpapers/BytheWater/": '"By the water" by Maciej Wiklo',
    "plasma-workspace-wallpapers/usr/share/wallpapers/ColdRipple/": '"Cold Ripple" by Risto Saukonpää',
    "plasma-workspace-wallpapers/usr/share/wallpapers/ColorfulCups/": '"Colorful Cups" by Dmitri Popov',
    "plasma-workspace-wallpapers/usr/share/wallpapers/EveningGlow/": '"Evening Glow" by Ian Hex',
    "plasma-workspace-wallpapers/usr/share/wallpapers/Grey/": '"Grey" by Sigi Sagi',
    "plasma-workspace-wallpapers/usr/share/wallpapers/Kite/": '"Kite" by Risto Saukonpää',
    "plasma-workspace-wallpapers/usr/share/wallpapers/Path/": '"Path" by Risto Saukonpää',
    "plasma-workspace-wallpapers/usr/share/wallpapers/summer_1am/": '"summer 1am" by Risto Saukonpää',
    "mate-backgrounds/usr/share/backgrounds/mate/nature/GreenMeadow.jpg": "GreenMeadow.jpg, © 2005 Timothy Schellhase, 2008 Lapo Calamandrei",
    "mate-backgrounds/usr/share/backgrounds/mate/nature/RainDrops.jpg": 'RainDrops.jpg, © 2008 "blackcombwhistler07"',
    "mate-backgrounds/usr/share/backgrounds/mate/nature/Wood.jpg": "Wood.jpg, © 2008 Jean-François Fortin Tam",
    "mate-backgrounds/usr/share/backgrounds/mate/nature/YellowFlower.jpg": "YellowFlower.jpg, © 2008 Charles Barbin",
    "gnome-backgrounds/usr/share/backgrounds/gnome/adwaita-": "adwaita, © 2011 Jakub Steiner",
}
BACKGROUND_LICENCES = {
    "plasma-workspace-wallpapers": "GPL-2+ (KDE Visual Design Group); the wallpaper's metadata says LGPLv3",
    "mate-backgrounds": "GPL-2+",
    "gnome-backgrounds": "GPL-2+ (package licence; the package lists no credit for this image)",
    "gnome-backgrounds/usr/share/backgrounds/gnome/adwaita-": "CC BY-SA 3.0 (image credit); GPL-2+ (package)",
}


@dataclass(frozen=True)
class Item:
    product_id: str
    title: str
    category: str
    image: str  # relative to the source folder
    role: str  # dataset role: "catalog" or "distractor"


def _hash_int(seed: str, *parts: str) -> int:
    digest = hashlib.sha256(":".join((seed, *parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _stratified_pick(candidates: list[Item], n: int, seed: str, start_counts: Counter[str] | None = None) -> list[Item]:
    """Pick ``n`` items, always from the category picked least so far.

    Inside a category items are taken in hash order; ties between categories
    are broken by a hash of the category name, so the result is deterministic
    without favouring the alphabet.
    """
    counts: Counter[str] = Counter(start_counts or {})
    pools: dict[str, list[Item]] = defaultdict(list)
    for item in candidates:
        pools[item.category].append(item)
    for pool in pools.values():
        pool.sort(key=lambda it: _hash_int(seed, "item", it.product_id))
    picked: list[Item] = []
    while len(picked) < n and any(pools.values()):
        cat = min(
            (c for c, pool in pools.items() if pool),
            key=lambda c: (counts[c], _hash_int(seed, "category", c)),
        )
        picked.append(pools[cat].pop(0))
        counts[cat] += 1
    if len(picked) < n:
        raise SystemExit(f"only {len(picked)} candidates, {n} requested")
    return picked


def illustrative_brand(product_id: str) -> str:
    return BRANDS[_hash_int("brand", product_id) % len(BRANDS)]


def illustrative_price(product_id: str) -> str:
    """A price from 2.99 to 238.99, log-uniform, ending in .99."""
    u = (_hash_int("price", product_id) % 1_000_000) / 1_000_000
    whole = math.floor(3 * 80**u)  # 3 .. 239
    return f"{whole - 0.01:.2f}"


def title_colour(title: str) -> str | None:
    m = _COLOUR_TITLE.match(title.strip())
    if not m:
        return None
    noun = title.strip().rstrip(".").split()[-1].lower()
    if noun in _COLOUR_EXCLUDED_NOUNS:
        return None
    colour = (m.group("c1") or m.group("c2")).lower()
    return "grey" if colour == "gray" else colour


def attributes_json(item: Item) -> str:
    attrs: dict[str, str] = {}
    colour = title_colour(item.title) if item.role == "catalog" else None
    if colour:
        attrs["color"] = colour
    return json.dumps(attrs, ensure_ascii=False, sort_keys=True)


def licence_table(source_readme: Path) -> str:
    """The licence table of the dataset README, verbatim."""
    lines = source_readme.read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    for line in lines:
        if line.startswith("| package (version)") or (out and line.startswith("|")):
            out.append(line)
        elif out:
            break
    if not out:
        raise SystemExit(f"licence table not found in {source_readme}")
    return "\n".join(out)


def background_credit(background: str) -> tuple[str, str]:
    """(credit, licence) of a query background, given as ``package/path``."""
    package = background.split("/", 1)[0]
    licence = next(
        (lic for prefix, lic in BACKGROUND_LICENCES.items() if "/" in prefix and background.startswith(prefix)),
        BACKGROUND_LICENCES[package],
    )
    credit = next(
        (c for prefix, c in BACKGROUND_CREDITS.items() if background.startswith(prefix)),
        f"{background.rsplit('/', 1)[-1]} (GNOME)",
    )
    return credit, licence


def _clean_jpgs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.jpg"):
        old.unlink()


def build(source: Path, out: Path, n_products: int, n_distractors: int, n_queries: int, seed: str) -> dict:
    catalog_rows = _read_csv(source / "catalog.csv")
    distractor_rows = _read_csv(source / "distractors.csv")
    query_rows = _read_csv(source / "queries.csv")
    meta = {r["query_id"]: r for r in _read_csv(source / "queries_meta.csv")}
    sources = {r["product_id"]: r for r in _read_csv(source / "sources.csv")}

    catalog = [Item(r["product_id"], r["title"], r["category"], r["image"], "catalog") for r in catalog_rows]
    distractors = [Item(r["product_id"], r["title"], r["category"], r["image"], "distractor") for r in distractor_rows]

    # 1. Every catalog product that has a query.
    queried = {r["product_id"] for r in query_rows}
    with_query = sorted((it for it in catalog if it.product_id in queried), key=lambda it: it.product_id)
    if len(with_query) > n_products:
        raise SystemExit(f"{len(with_query)} products have queries; --products must be at least that")
    # 2. Top up with the other products, stratified by category.
    rest = [it for it in catalog if it.product_id not in queried]
    top_up = _stratified_pick(rest, n_products - len(with_query), seed, Counter(it.category for it in with_query))
    products = with_query + top_up
    # 3. Distractors from product-like categories (openclipart only: the three
    #    tuxpaint distractors are tiny stamps).
    eligible = [
        it
        for it in distractors
        if it.category not in NON_PRODUCT_DISTRACTOR_CATEGORIES
        and sources[it.product_id]["package"] == "openclipart-png"
    ]
    extra = _stratified_pick(eligible, n_distractors, seed)
    items = sorted(products + extra, key=lambda it: it.product_id)
    item_ids = {it.product_id for it in items}
    by_id = {it.product_id: it for it in items}

    # 4. Queries: distinct products, top-level categories and backgrounds where possible.
    candidates = sorted(
        (r for r in query_rows if r["product_id"] in item_ids),
        key=lambda r: _hash_int(seed, "query", r["query_id"]),
    )
    chosen: list[dict[str, str]] = []
    for strict in (True, False):
        for r in candidates:
            if len(chosen) >= n_queries:
                break
            if r in chosen or any(c["product_id"] == r["product_id"] for c in chosen):
                continue
            if strict:
                top = by_id[r["product_id"]].category.split("/")[0]
                if any(by_id[c["product_id"]].category.split("/")[0] == top for c in chosen):
                    continue
                if any(meta[c["query_id"]]["background"] == meta[r["query_id"]]["background"] for c in chosen):
                    continue
            chosen.append(r)
    if len(chosen) < n_queries:
        raise SystemExit(f"only {len(chosen)} queries available, {n_queries} requested")
    chosen.sort(key=lambda r: r["query_id"])

    # Write images.
    _clean_jpgs(out / "catalog")
    _clean_jpgs(out / "queries")
    for it in items:
        shutil.copyfile(source / it.image, out / "catalog" / f"{it.product_id}.jpg")
    for r in chosen:
        shutil.copyfile(source / r["image"], out / "queries" / f"{r['query_id']}.jpg")

    # Write manifests.
    with (out / "catalog.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["product_id", "title", "category", "brand", "price", "image", "attributes"])
        for it in items:
            w.writerow(
                [
                    it.product_id,
                    it.title,
                    it.category,
                    illustrative_brand(it.product_id),
                    illustrative_price(it.product_id),
                    f"catalog/{it.product_id}.jpg",
                    attributes_json(it),
                ]
            )
    with (out / "queries.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["query_id", "image", "product_id"])
        for r in chosen:
            w.writerow([r["query_id"], f"queries/{r['query_id']}.jpg", r["product_id"]])
    with (out / "sources.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["item_id", "image", "dataset_role", "package", "source"])
        for it in items:
            s = sources[it.product_id]
            w.writerow(
                [
                    it.product_id,
                    f"catalog/{it.product_id}.jpg",
                    s["role"],
                    s["package"],
                    s["source"],
                ]
            )
        for r in chosen:
            package, _, path = meta[r["query_id"]]["background"].partition("/")
            w.writerow(
                [
                    r["query_id"],
                    f"queries/{r['query_id']}.jpg",
                    "query_background",
                    package,
                    "/" + path,
                ]
            )

    stats = {
        "products": len(items),
        "with_query": len(with_query),
        "top_up": len(top_up),
        "distractors": len(extra),
        "queries": len(chosen),
        "categories": len({it.category for it in items}),
        "source_categories": len({it.category for it in catalog}),
        "covered_categories": len({it.category for it in products}),
        "packages": Counter(sources[it.product_id]["package"] for it in items),
        "with_colour": sum(1 for it in items if attributes_json(it) != "{}"),
        "backgrounds": sorted({meta[r["query_id"]]["background"] for r in chosen}),
    }
    (out / "README.md").write_text(render_readme(source, stats, n_products, n_distractors, seed), encoding="utf-8")
    return stats


def render_readme(source: Path, stats: dict, n_products: int, n_distractors: int, seed: str) -> str:
    pk = stats["packages"]
    credits = []
    for bg in stats["backgrounds"]:
        package, _, path = bg.partition("/")
        credit, licence = background_credit(bg)
        credits.append(f"| `/{path}` | `{package}` | {credit} | {licence} |")
    credit_table = "\n".join(
        ["| background file | package | credit | licence |", "| --- | --- | --- | --- |", *credits]
    )
    return f"""# Demo catalog

A small, self-contained catalog for trying the visual product search end to end
(index the catalog, then search with the query photos). It is **generated** by
`python tools/make_demo_catalog.py` (seed `{seed}`) from the team's offline
benchmark, `shared/datasets/dev` (see that folder's README). Do not edit the
files by hand; change the script and run it again.

## Contents

| path | what |
| --- | --- |
| `catalog/<product_id>.jpg` | {stats["products"]} product shots, copied byte for byte from the dataset |
| `catalog.csv` | `product_id,title,category,brand,price,image,attributes` (UTF-8, quoted where needed) |
| `queries/<query_id>.jpg` | {stats["queries"]} shopper-style photos of demo products (from the dataset's queries) |
| `queries.csv` | `query_id,image,product_id`; `product_id` is the product shown in the photo |
| `sources.csv` | `item_id,image,dataset_role,package,source`: the Debian file behind every copied image |

`image` paths are relative to this folder.

How the {stats["products"]} products were chosen (deterministically):

* all {stats["with_query"]} dataset catalog products that have at least one shopper query;
* {stats["top_up"]} further dataset catalog products, picked category by category (always from the
  category with the fewest picks so far), so that {stats["covered_categories"]} of the dataset catalog's
  {stats["source_categories"]} categories appear ({stats["categories"]} in all, with the items below);
* {stats["distractors"]} items from the dataset's distractors (openclipart, product-like categories
  only: no icons, maps, people or warning signs), also stratified by category. In the benchmark they
  are never the answer; in the demo they are ordinary catalog items. Their images are 256 × 256,
  the others 512 × 512.

The query photos show products pasted onto wallpaper photos with perspective, rotation, shadows,
colour casts, blur, noise and strong JPEG compression (see the dataset README). They come from the
**dev** set, which is used for tuning; the held-out benchmark is not part of the demo.

## Metadata: what is real and what is not

* `product_id`, `title` and `category` are the dataset's. Titles are tuxpaint stamp descriptions or,
  for openclipart items, file names (which often contain the artist's name). Categories are the
  source packages' folder names, not harmonised between them.
* **`brand` and `price` are ILLUSTRATIVE.** The dataset has neither. Both are derived
  deterministically from a SHA-256 hash of the product id: the brand from a fixed list of
  made-up names, the price log-uniformly between 2.99 and 238.99, ending in .99. They exist
  only so that brand and price filters can be demonstrated. They say nothing about the items.
* `attributes` is a JSON object. `color` is set only when a catalog product's title states the
  colour plainly ("A red apple.", "A green fedora."); colour words that are part of a proper or
  species name ("A Silver Gull.", "A blue gnu.") are not used. {stats["with_colour"]} items have a colour;
  all others have `{{}}`. No colour is guessed from pixels.

## Where the images come from and their licences

{stats["packages"].get("tuxpaint-stamps-default", 0)} catalog images come from `tuxpaint-stamps-default`,
{pk.get("openclipart-png", 0)} from `openclipart-png`. The query photos are composites of a product
cut-out and a wallpaper from the KDE, MATE or GNOME background packages. `sources.csv` names the
exact source file of every image. The licence table below is copied from the dataset README (the
counts in it describe the whole dev set, not this demo):

{licence_table(source / "README.md")}

Every image here is a derived work of these files, so keep these attributions (this README and
`sources.csv`) if you pass the images on.

Background photos used by the demo queries (credits from the Debian packages' `copyright` files
and, for KDE, the wallpapers' `metadata.json`):

{credit_table}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(
            "Copy a deterministic subset of the dev benchmark into demo/: product images, "
            "catalog.csv (with ILLUSTRATIVE brand and price), query photos, queries.csv, "
            "sources.csv and README.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the dev dataset folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument(
        "--products",
        type=int,
        default=240,
        help="catalog products to copy (all queried ones first)",
    )
    parser.add_argument("--distractors", type=int, default=60, help="dataset distractors to add as catalog items")
    parser.add_argument("--queries", type=int, default=12, help="query photos to copy")
    parser.add_argument("--seed", default="demo-v1", help="seed of the deterministic choices")
    args = parser.parse_args(argv)

    if not (args.source / "catalog.csv").is_file():
        parser.error(f"no dataset at {args.source} (expected catalog.csv there)")
    args.out.mkdir(parents=True, exist_ok=True)
    stats = build(args.source, args.out, args.products, args.distractors, args.queries, args.seed)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(
        f"wrote {stats['products']} catalog items ({stats['with_query']} queried, {stats['top_up']} top-up, "
        f"{stats['distractors']} from distractors; {stats['categories']} categories), "
        f"{stats['queries']} queries to {args.out} ({total / 1e6:.1f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
