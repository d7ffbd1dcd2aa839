"""Dev-set queries find their product, measured by `imagesearch eval` through the public API.

Every run: the dev catalog (no distractors) and every fourth dev query, indexed into an evaluation
catalog of their own. Opt-in (IMAGESEARCH_SLOW_TESTS=1, ~2.5 min on 2 CPU cores): catalog +
distractors and every dev query, the figures docs/quality.md reports. Floors were measured, not guessed (see
docs/quality.md; the test prints the figures): EfficientNet-Lite0 with
GeM pooling (model version 2), queries cropped to the subject the model finds in a
224 px first pass and embedded at 256 px, catalog shots indexed whole and trimmed to the
object, results ranked with the predicted category and hedged with the whole photo. The whitened
versions, the generic one a fresh clone serves (3) and one adapted to dev (`imagesearch adapt`),
have their own, opt-in tests: test_recall_adapted.py.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
from pathlib import Path

import pytest

from imagesearch.cli.main import main as cli
from imagesearch.v1 import search_pb2

pytestmark = pytest.mark.asyncio(loop_scope="session")

RECALL_AT_1_FLOOR = 0.83  # measured 0.860 with the zoom looks, 0.826 without; the baseline 0.612
RECALL_AT_10_FLOOR = 0.90  # measured 0.933 (0.903 without)
CATEGORY_P10_FLOOR = 0.34  # measured 0.368 (0.269 in plain score order)


# Without distractors, on every fourth query (measured: see the test's output). A fourth, not a third:
# with the zoom tiles a search costs more, and this test is the suite's longest.
SAMPLE_RECALL_AT_1_FLOOR = 0.87  # measured 0.907-0.920 (2-core x86-64, CPU Triton, v3 with zoom tiles)
SAMPLE_RECALL_AT_10_FLOOR = 0.93  # measured 0.973


def _sample(dev_set: Path, folder: Path) -> Path:
    """The dev set without its distractors and with every fourth query (the images stay where they are)."""
    folder.mkdir()
    (folder / "catalog.csv").write_text(
        (dev_set / "catalog.csv").read_text().replace(",catalog/", f",{dev_set}/catalog/")
    )
    with (dev_set / "queries.csv").open() as f:
        rows = list(csv.DictReader(f))
    with (folder / "queries.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["query_id", "image", "product_id"])
        writer.writeheader()
        writer.writerows({**row, "image": str(dev_set / row["image"])} for row in rows[::4])
    return folder


async def test_a_sample_of_dev_queries_finds_its_product(fleet, dev_set, tmp_path, capsys) -> None:
    out = tmp_path / "sample.json"
    sample = _sample(dev_set, tmp_path / "sample")
    argv = ["--gateway", fleet.gateway.address, "eval", str(sample), "--out", str(out), "--no-progress"]
    assert await asyncio.to_thread(cli, argv) == 0
    print(capsys.readouterr().out)
    report = json.loads(out.read_text())["report"]
    assert report["queries"] == 75
    assert report["recall_at_1"] >= SAMPLE_RECALL_AT_1_FLOOR
    assert report["recall_at_10"] >= SAMPLE_RECALL_AT_10_FLOOR


@pytest.mark.skipif(not os.environ.get("IMAGESEARCH_SLOW_TESTS"), reason="slow: set IMAGESEARCH_SLOW_TESTS=1")
async def test_dev_queries_find_their_product(fleet, gateway, dev_set, tmp_path, capsys) -> None:
    out = tmp_path / "dev.json"
    argv = ["--gateway", fleet.gateway.address, "eval", str(dev_set), "--out", str(out), "--no-progress"]
    assert await asyncio.to_thread(cli, argv) == 0
    printed = capsys.readouterr()
    print(printed.out)
    result = json.loads(out.read_text())
    report = result["report"]
    assert report["queries"] == 299 and result["indexed_items"] == 1495
    assert report["recall_at_1"] >= RECALL_AT_1_FLOOR
    assert report["recall_at_10"] >= RECALL_AT_10_FLOOR
    assert report["category_precision_at_10"] >= CATEGORY_P10_FLOOR
    assert report["recall_at_1"] <= report["recall_at_5"] <= report["recall_at_10"]
    assert out.with_suffix(".misses.png").stat().st_size > 10_000
    # The evaluation left the index as it found it: its catalog is gone, the default one untouched.
    catalogs = [line for line in printed.err.splitlines() if "catalog eval_" in line]
    name = catalogs[0].split("catalog ")[1].split()[0]
    assert not (await gateway.DeleteCatalog(search_pb2.DeleteCatalogRequest(catalog=name))).existed
