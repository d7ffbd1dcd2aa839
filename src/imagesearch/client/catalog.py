"""Reading a catalog to index: a CSV file or a folder of images.

CSV columns: `product_id,title,category,brand,price,image,attributes`. Only
`product_id` and `image` are required; the rest default to empty (price 0).
`image` is a path relative to the CSV's folder (or absolute); `attributes` is
a JSON object string such as `{"color": "red"}`. Several rows with the same
`product_id` give that product several images (metadata from the first row).

A folder is walked recursively: every .jpg/.jpeg/.png/.webp becomes a product
whose id and title are the file's stem and whose category is its parent folder
relative to the root ("" for files at the root).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
REQUIRED_COLUMNS = ("product_id", "image")
KNOWN_COLUMNS = ("product_id", "title", "category", "brand", "price", "image", "attributes")


class CatalogError(ValueError):
    """The catalog cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class CatalogItem:
    product_id: str
    images: tuple[Path, ...]
    title: str = ""
    category: str = ""
    brand: str = ""
    price: float = 0.0
    attributes: dict[str, str] = field(default_factory=dict)
    # Where the product was defined, for messages ("catalog.csv:12").
    source: str = ""


def load_catalog(path: str | Path) -> list[CatalogItem]:
    """Products from a CSV file or an image folder, in file order."""
    p = Path(path)
    if p.is_dir():
        return load_folder(p)
    if p.is_file():
        return load_csv(p)
    raise CatalogError(f"{path}: no such file or folder")


# --- CSV -------------------------------------------------------------------


def load_csv(path: Path) -> list[CatalogItem]:
    base = path.resolve().parent
    items: dict[str, CatalogItem] = {}
    for line, row in _csv_rows(path):
        item = _item_from_row(row, base, f"{path}:{line}")
        first = items.get(item.product_id)
        if first is None:
            items[item.product_id] = item
        else:  # another image of a product we already have
            items[item.product_id] = dataclasses.replace(first, images=first.images + item.images)
    return list(items.values())


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line where the record starts, row) for every non-empty record."""
    try:
        # utf-8-sig: spreadsheets like to prepend a byte-order mark.
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            reader.fieldnames = _check_header(path, reader.fieldnames)
            start = reader.line_num + 1
            for row in reader:
                if None in row:
                    raise CatalogError(f"{path}:{start}: more fields than the header has columns (unquoted comma?)")
                if any((v or "").strip() for v in row.values()):
                    yield start, {k: (v or "").strip() for k, v in row.items()}
                start = reader.line_num + 1
    except UnicodeDecodeError as err:
        raise CatalogError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except csv.Error as err:
        raise CatalogError(f"{path}: malformed CSV: {err}") from None


def _check_header(path: Path, fieldnames: Sequence[str] | None) -> list[str]:
    """The header's column names, stripped; CatalogError when a required one is missing."""
    if not fieldnames:
        raise CatalogError(f"{path}: empty file; expected a header line with {', '.join(KNOWN_COLUMNS)}")
    names = [n.strip() for n in fieldnames]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise CatalogError(
            f"{path}:1: missing column(s) {', '.join(missing)}; header is {','.join(names)} "
            f"(expected {','.join(KNOWN_COLUMNS)}; only product_id and image are required)"
        )
    return names


def _item_from_row(row: dict[str, str], base: Path, where: str) -> CatalogItem:
    product_id = row.get("product_id", "")
    if not product_id:
        raise CatalogError(f"{where}: empty product_id")
    image = row.get("image", "")
    if not image:
        raise CatalogError(f"{where}: product {product_id} has an empty image column")
    return CatalogItem(
        product_id=product_id,
        images=(_resolve_image(base, image),),
        title=row.get("title", ""),
        category=row.get("category", ""),
        brand=row.get("brand", ""),
        price=parse_price(row.get("price", ""), where),
        attributes=parse_attributes(row.get("attributes", ""), where),
        source=where,
    )


def _resolve_image(base: Path, image: str) -> Path:
    p = Path(image).expanduser()
    return p if p.is_absolute() else base / p


def parse_price(text: str, where: str) -> float:
    if not text:
        return 0.0
    try:
        price = float(text)
    except ValueError:
        raise CatalogError(f"{where}: price must be a number, got {text!r}") from None
    if not math.isfinite(price) or price < 0:
        raise CatalogError(f"{where}: price must be a finite number >= 0, got {text!r}")
    return price


def parse_attributes(text: str, where: str) -> dict[str, str]:
    """A JSON object of scalars -> string map (the wire type is map<string, string>)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise CatalogError(
            f"{where}: attributes is not valid JSON ({err.msg} at column {err.colno}): {text!r}"
        ) from None
    if not isinstance(value, dict):
        raise CatalogError(f'{where}: attributes must be a JSON object like {{"color": "red"}}, got {text!r}')
    return {key: _attribute_value(key, v, where) for key, v in value.items()}


def _attribute_value(key: str, value: object, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise CatalogError(f"{where}: attribute {key!r} must be a string, number or boolean, got {json.dumps(value)}")


# --- folder ----------------------------------------------------------------


def load_folder(root: Path) -> list[CatalogItem]:
    items: dict[str, CatalogItem] = {}
    for image in _image_files(root):
        rel = image.relative_to(root)
        category = rel.parent.as_posix() if rel.parent != Path(".") else ""
        product_id = image.stem
        if product_id in items:
            raise CatalogError(
                f"{root}: two images would get product id {product_id!r}: "
                f"{items[product_id].source} and {rel.as_posix()}; rename one, or use a CSV"
            )
        items[product_id] = CatalogItem(
            product_id=product_id,
            images=(image.resolve(),),
            title=image.stem,
            category=category,
            source=rel.as_posix(),
        )
    if not items:
        raise CatalogError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return list(items.values())


def _image_files(root: Path) -> list[Path]:
    """Image files below `root`, sorted, skipping hidden files and folders."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def display_path(path: str | Path) -> str:
    """A path relative to the working directory when it lies below it, else as given."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)
