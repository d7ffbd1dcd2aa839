"""The benchmark dataset format (see ../shared/datasets/dev/README.md).

catalog.csv, distractors.csv   product_id,title,category,image
queries.csv                    query_id,image,product_id
queries_meta.csv (optional)    query_id,...; a `variation` column names each query's kind of
                               variation (occluded, small, ...), and the report is broken down by it
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path


class DatasetError(ValueError):
    """The folder is not a dataset in the expected format; the message says what is missing."""


@dataclass(frozen=True)
class Item:
    product_id: str
    title: str
    category: str
    image: Path
    distractor: bool


@dataclass(frozen=True)
class Query:
    query_id: str
    image: Path
    product_id: str
    variation: str = ""  # from queries_meta.csv, when it has the column


@dataclass(frozen=True)
class Dataset:
    root: Path
    items: list[Item]
    queries: list[Query]

    @property
    def categories(self) -> dict[str, str]:
        return {item.product_id: item.category for item in self.items}


def _rows(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
        return list(reader)


def _variations(path: Path) -> dict[str, str]:
    """query_id -> variation, or nothing when the dataset has no meta file or no such column (as dev)."""
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if "query_id" not in (reader.fieldnames or []) or "variation" not in (reader.fieldnames or []):
            return {}
        return {row["query_id"]: row["variation"] for row in reader}


def load_dataset(root: Path) -> Dataset:
    root = root.resolve()
    items: list[Item] = []
    for name, distractor in (("catalog.csv", False), ("distractors.csv", True)):
        path = root / name
        if distractor and not path.exists():
            continue  # distractors are optional
        for row in _rows(path, ("product_id", "category", "image")):
            items.append(
                Item(row["product_id"], row.get("title", ""), row["category"], root / row["image"], distractor)
            )
    known = {item.product_id for item in items}
    queries = [
        Query(row["query_id"], root / row["image"], row["product_id"])
        for row in _rows(root / "queries.csv", ("query_id", "image", "product_id"))
    ]
    variations = _variations(root / "queries_meta.csv")
    queries = [replace(q, variation=variations.get(q.query_id, "")) for q in queries]
    unknown = sorted({q.product_id for q in queries} - known)
    if unknown:
        raise DatasetError(f"queries.csv names products not in the catalog: {', '.join(unknown[:5])}")
    return Dataset(root, items, queries)
