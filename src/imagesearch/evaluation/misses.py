"""A contact sheet of the worst misses: query | expected product | what came back instead."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from imagesearch.client.sheet import contain, fit_text, font, load_image, placeholder
from imagesearch.evaluation.dataset import Dataset
from imagesearch.evaluation.metrics import QueryOutcome

TILE = 160
CAPTION = 34
MARGIN = 8
COLUMNS = ("query", "expected", "#1", "#2", "#3")


def _tile(image: Image.Image | None, label: str, sub: str, colour: str) -> Image.Image:
    tile = Image.new("RGB", (TILE, TILE + CAPTION), "white")
    body = contain(image, TILE) if image is not None else placeholder(TILE, "no image", font(12))
    tile.paste(body, ((TILE - body.width) // 2, (TILE - body.height) // 2))
    draw = ImageDraw.Draw(tile)
    draw.text(
        (4, TILE + 2), fit_text(draw, label, font(12, bold=True), TILE - 8), fill=colour, font=font(12, bold=True)
    )
    draw.text((4, TILE + 17), fit_text(draw, sub, font(11), TILE - 8), fill="#666666", font=font(11))
    return tile


def render_misses(dataset: Dataset, outcomes: Sequence[QueryOutcome], out: Path, limit: int = 12) -> int:
    """Write the sheet for the `limit` worst misses (ground truth lowest or absent); returns rows drawn."""
    images = {item.product_id: item.image for item in dataset.items}
    titles = {item.product_id: item.title or item.product_id for item in dataset.items}
    queries = {q.query_id: q.image for q in dataset.queries}
    misses = [o for o in outcomes if o.rank() != 1]
    misses.sort(key=lambda o: -(o.rank() or 10**9))
    rows = misses[:limit]
    width = MARGIN + len(COLUMNS) * (TILE + MARGIN)
    height = 30 + max(1, len(rows)) * (TILE + CAPTION + MARGIN)
    sheet = Image.new("RGB", (width, height), "#f4f4f4")
    draw = ImageDraw.Draw(sheet)
    title = f"worst {len(rows)} of {len(misses)} misses (rank of the expected product; '-' = beyond the results)"
    draw.text((MARGIN, 8), title, fill="black", font=font(14, bold=True))
    for row, outcome in enumerate(rows):
        y = 30 + row * (TILE + CAPTION + MARGIN)
        rank = outcome.rank()
        tiles = [
            _tile(load_image(queries.get(outcome.query_id)), outcome.query_id, f"expected rank {rank or '-'}", "black"),
            _tile(
                load_image(images.get(outcome.product_id)),
                titles.get(outcome.product_id, ""),
                outcome.product_id,
                "#1a7f37",
            ),
        ]
        for pid, score, _ in outcome.hits[:3]:
            tiles.append(_tile(load_image(images.get(pid)), f"{score:.3f} {titles.get(pid, pid)}", pid, "#b42318"))
        for column, tile in enumerate(tiles):
            sheet.paste(tile, (MARGIN + column * (TILE + MARGIN), y))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return len(rows)
