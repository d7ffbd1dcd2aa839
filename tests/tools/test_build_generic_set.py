"""tools/build_generic_set.py writes a catalog `imagesearch adapt` reads: one catalog shot per object-like
character the font draws, nothing for characters that are not products, the same files on every run.
Drawn here with a plain font the machine has, so the test needs no emoji font."""

from __future__ import annotations

import csv
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image
from support import load_tool

from imagesearch.client.catalog import load_catalog

PLAIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return load_tool("build_generic_set")


def test_people_signs_and_symbols_are_not_products(tool: ModuleType) -> None:
    assert tool.is_product("RED APPLE") and tool.is_product("BICYCLE") and tool.is_product("WOMANS HAT")
    for name in ("GRINNING FACE", "WAVING HAND SIGN", "MAN IN TUXEDO", "CHEQUERED FLAG", "RECYCLING SYMBOL"):
        assert not tool.is_product(name), name


def test_a_catalog_shot_is_a_512_px_square_with_the_object_centred_on_white(tool: ModuleType) -> None:
    glyph = Image.new("RGBA", (40, 80), (200, 0, 0, 255))
    shot = tool.catalog_shot(glyph)
    assert shot.size == (512, 512) and shot.mode == "RGB"
    assert shot.getpixel((3, 3)) == (255, 255, 255) and shot.getpixel((256, 256)) == (200, 0, 0)
    left, top, right, bottom = Image.eval(shot.convert("L"), lambda v: 255 - v).getbbox() or (0, 0, 0, 0)
    assert bottom - top == pytest.approx(512 * tool.EXTENT, abs=2) and (left + right) / 2 == pytest.approx(256, abs=2)


def test_a_missing_font_is_a_clear_error(tool: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(tool.GenericSetError, match="apt-get install fonts-noto-color-emoji"):
        tool.build(tmp_path / "out", tmp_path / "no-such-font.ttf")


@pytest.mark.skipif(not PLAIN_FONT.is_file(), reason=f"{PLAIN_FONT} is not installed")
def test_the_collection_is_a_catalog_adapt_reads_and_is_the_same_every_time(tool: ModuleType, tmp_path: Path) -> None:
    symbols = [(0x2600, 0x26FF)]  # Miscellaneous Symbols: the plain font draws its objects (sun, umbrella, ...)
    first = tool.build(tmp_path / "a", PLAIN_FONT, symbols)
    again = tool.build(tmp_path / "b", PLAIN_FONT, symbols)
    assert first == again > 50
    items = load_catalog(tmp_path / "a" / "catalog.csv")
    assert len(items) == first and all(len(item.images) == 1 and item.images[0].is_file() for item in items)
    with (tmp_path / "a" / "catalog.csv").open() as handle:
        titles = [row["title"] for row in csv.DictReader(handle)]
    assert "Black sun with rays" in titles and not any("face" in t.lower().split() for t in titles)
    for item in items[:20]:
        name = item.images[0].name
        assert (tmp_path / "a" / "catalog" / name).read_bytes() == (tmp_path / "b" / "catalog" / name).read_bytes()
    assert "Apache License 2.0" in (tmp_path / "a" / "README.md").read_text()


def test_fit_into_runs_adapt_with_the_served_defaults_recipe(
    tool: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recipe of version 3 (its number and dimensions) lives in the tool; the bootstrap and the model image
    only name the repository."""
    import imagesearch.cli.main as cli

    calls: list[list[str]] = []
    monkeypatch.setattr(cli, "main", lambda argv: calls.append(list(argv)) or 0)
    monkeypatch.setattr(tool, "build", lambda out: 5)
    assert tool.main(["--out", str(tmp_path / "g"), "--fit-into", str(tmp_path / "repo")]) == 0
    repo = ["--model-repo", str(tmp_path / "repo")]
    assert calls == [
        ["adapt", str(tmp_path / "g"), *repo, "--version", "3", "--dimension", str(tool.DIMENSION), "--no-progress"]
    ]
    monkeypatch.setattr(tool, "build", lambda out: (_ for _ in ()).throw(tool.GenericSetError("no font")))
    assert tool.main(["--fit-into", str(tmp_path / "repo")]) == tool.NO_SOURCE and len(calls) == 1
