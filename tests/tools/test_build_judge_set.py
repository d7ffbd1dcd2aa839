"""tools/build_judge_set.py writes a dataset `imagesearch eval` reads: every kind of variation present,
ground truth consistent, the same files for the same seed. Built here from a fixture folder of images
the test draws, so it needs none of the Debian packages the real set is made from."""

from __future__ import annotations

import colorsys
import csv
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image, ImageDraw
from support import load_tool

from imagesearch.evaluation.dataset import load_dataset


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return load_tool("build_judge_set")


def drawing(index: int, count: int) -> Image.Image:
    """A distinct object on a transparent background: a star with its own number of points, hue and inset."""
    image = Image.new("RGBA", (180, 160), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    points = 3 + index % 7
    hue = index / count
    colour = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.8, 0.9))
    inner = 0.35 + 0.4 * ((index * 37) % 11) / 11
    star = [
        (
            90 + 80 * (1 if k % 2 == 0 else inner) * math.cos(math.pi * k / points + index),
            80 + 75 * (1 if k % 2 == 0 else inner) * math.sin(math.pi * k / points + index),
        )
        for k in range(2 * points)
    ]
    draw.polygon(star, fill=(*colour, 255))
    x = 40 + (index * 13) % 80
    draw.rectangle((x, 60, x + 30, 100), fill=(255 - colour[0], 255 - colour[1], 255 - colour[2], 255))
    return image


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("judge_fixtures")
    total = 18
    for index in range(total):
        role, category = ("products", ("toys", "tools")[index % 2]) if index < 12 else ("distractors", "misc")
        path = folder / role / category / f"item_{index:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        drawing(index, total).save(path)
    rng = np.random.default_rng(0)
    for index in range(2):
        path = folder / "backgrounds" / f"scene_{index}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        noise = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        Image.fromarray(noise).resize((800, 600), Image.Resampling.BICUBIC).save(path)
    return folder


def build(tool: ModuleType, fixtures: Path, out: Path) -> None:
    argv = ["--fixtures", str(fixtures), "--out", str(out), "--seed", "7", "--products", "10", "--query-products", "9"]
    assert tool.main([*argv, "--distractors", "5", "--workers", "1", "--no-progress"]) == 0


@pytest.fixture(scope="module")
def judge(tool: ModuleType, fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("judge") / "set"
    build(tool, fixtures, out)
    return out


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_dataset_loader_reads_it_with_every_kind_of_variation(tool: ModuleType, judge: Path) -> None:
    dataset = load_dataset(judge)
    catalog = [i for i in dataset.items if not i.distractor]
    distractors = [i for i in dataset.items if i.distractor]
    assert (len(catalog), len(distractors)) == (10, 5)
    assert 9 <= len(dataset.queries) <= 18
    assert {q.variation for q in dataset.queries} == set(tool.KINDS)
    for item in dataset.items:
        with Image.open(item.image) as image:
            assert image.size == ((512, 512) if not item.distractor else (256, 256)) and image.mode == "RGB"
    for query in dataset.queries:
        with Image.open(query.image) as image:
            assert image.size in ((640, 480), (480, 640))


def test_ground_truth_is_a_catalog_product_and_every_item_has_its_source(judge: Path) -> None:
    dataset = load_dataset(judge)
    catalog = {i.product_id for i in dataset.items if not i.distractor}
    assert {q.product_id for q in dataset.queries} <= catalog  # never a distractor
    assert len({i.product_id for i in dataset.items}) == len(dataset.items)
    assert len({q.query_id for q in dataset.queries}) == len(dataset.queries)
    sources = {r["product_id"]: r for r in rows(judge / "sources.csv")}
    assert set(sources) == {i.product_id for i in dataset.items}
    assert {r["role"] for r in sources.values() if r["product_id"] in catalog} == {"catalog"}
    meta = rows(judge / "queries_meta.csv")
    assert sorted(m["query_id"] for m in meta) == sorted(q.query_id for q in dataset.queries)
    by_kind = {m["variation"]: m for m in meta}
    assert 0.1 <= float(by_kind["small"]["extent"]) <= 0.25
    assert float(by_kind["occluded"]["occlusion"]) > 0.05
    assert float(by_kind["cut"]["visible"]) < 0.95
    assert by_kind["mirrored"]["mirrored"] == "1"
    for m in meta:  # the product's true box, inside the photo (research/exp_oracle.py reads it)
        left, top, right, bottom = (int(v) for v in m["box"].split())
        assert 0 <= left < right <= int(m["width"]) and 0 <= top < bottom <= int(m["height"])
    small = [int(v) for v in by_kind["small"]["box"].split()]
    assert (small[2] - small[0]) <= 0.3 * int(by_kind["small"]["width"])
    readme = (judge / "README.md").read_text()
    assert "seed 7" in readme and "`occluded`" in readme and "| `fixture`" in readme


def test_the_same_seed_writes_the_same_set(tool: ModuleType, fixtures: Path, judge: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build(tool, fixtures, again)
    assert (again / "queries.csv").read_text() == (judge / "queries.csv").read_text()
    assert (again / "queries_meta.csv").read_text() == (judge / "queries_meta.csv").read_text()
    first = sorted((judge / "queries").iterdir())[0].name
    assert (again / "queries" / first).read_bytes() == (judge / "queries" / first).read_bytes()
