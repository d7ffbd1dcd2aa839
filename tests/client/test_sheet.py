"""Contact sheets: the query and its results in one PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import DEV_SET, solid_jpeg

from imagesearch.client.catalog import load_catalog
from imagesearch.client.sheet import SheetLayout, build_sheet, local_image_path, render_contact_sheet
from imagesearch.v1 import common_pb2

# --- contact sheet -----------------------------------------------------------------


def dev_hits(n: int) -> list[common_pb2.SearchHit]:
    catalog = load_catalog(DEV_SET / "catalog.csv")[:n]
    return [
        common_pb2.SearchHit(
            product_id=item.product_id,
            score=0.95 - 0.07 * i,
            title=item.title,
            category=item.category,
            image_uri=str(item.images[0]),
        )
        for i, item in enumerate(catalog)
    ]


@pytest.fixture
def sheet_hits() -> list[common_pb2.SearchHit]:
    if not (DEV_SET / "catalog.csv").exists():
        pytest.skip(f"dev dataset not found at {DEV_SET}")
    hits = dev_hits(7)
    # Results whose image is not on this machine still get a tile.
    hits.append(
        common_pb2.SearchHit(
            product_id="remote1",
            score=0.41,
            title="Image behind a URL",
            image_uri="https://cdn.example.com/remote1.jpg",
        )
    )
    hits.append(common_pb2.SearchHit(product_id="gone1", score=0.40, title="Default uri", image_uri="gone1#0"))
    return hits


def test_contact_sheet_renders_query_region_and_tiles(tmp_path: Path, sheet_hits: list[common_pb2.SearchHit]) -> None:
    query = Path(sheet_hits[0].image_uri)
    layout = SheetLayout()
    out = render_contact_sheet(
        tmp_path / "sub" / "sheet.png",
        sheet_hits,
        query,
        region=(0.2, 0.1, 0.8, 0.7),
        query_label="q.jpg",
        subtitle="fake-model 1  ·  12 ms",
        layout=layout,
    )
    sheet = Image.open(out)
    assert sheet.format == "PNG"
    columns, rows = 5, 2
    caption = layout.caption_lines * (layout.font_size + 5) + 6
    expected_w = 3 * layout.margin + layout.query_width + columns * layout.tile + (columns - 1) * layout.gap
    assert sheet.size[0] == expected_w
    assert sheet.size[1] >= 2 * layout.margin + rows * (layout.tile + caption)
    rgb = sheet.convert("RGB")
    # Red region outline on the query panel.
    panel = np.asarray(rgb.crop((layout.margin, 0, layout.margin + layout.query_width, sheet.size[1]))).astype(int)
    reds = ((panel[..., 0] > 200) & (panel[..., 1] < 60) & (panel[..., 2] < 60)).sum()
    assert reds > 500
    # The last two tiles (URL and default uri) are grey placeholders.
    top = layout.margin + 2 * (layout.font_size + 5) + 8
    x = 2 * layout.margin + layout.query_width + 3 * (layout.tile + layout.gap)
    y = top + (layout.tile + caption + layout.gap)
    assert rgb.getpixel((x + 5, y + 5)) == (200, 200, 200)
    # A real image tile is not a placeholder.
    first = rgb.crop(
        (
            2 * layout.margin + layout.query_width,
            top,
            2 * layout.margin + layout.query_width + layout.tile,
            top + layout.tile,
        )
    )
    assert len(np.unique(np.asarray(first).reshape(-1, 3), axis=0)) > 50
    if os.environ.get("IMAGESEARCH_KEEP_SHEET"):  # to look at it: IMAGESEARCH_KEEP_SHEET=/tmp/sheet.png
        sheet.save(os.environ["IMAGESEARCH_KEEP_SHEET"])


def test_contact_sheet_without_hits_or_query_still_renders(tmp_path: Path) -> None:
    sheet = build_sheet([], None, None, "more like p1", "", SheetLayout())
    assert sheet.size[0] > 0 and sheet.getpixel((SheetLayout().margin + 5, 80)) == (200, 200, 200)
    out = render_contact_sheet(tmp_path / "empty.png", [], None)
    assert Image.open(out).format == "PNG"


def test_local_image_path_accepts_paths_and_file_urls_only(tmp_path: Path) -> None:
    img = solid_jpeg(tmp_path / "a b.jpg", (1, 2, 3))
    assert local_image_path(str(img)) == img
    assert local_image_path("file://" + str(img).replace(" ", "%20")) == img
    assert local_image_path("https://example.com/a.jpg") is None
    assert local_image_path("p1#0") is None and local_image_path("") is None
