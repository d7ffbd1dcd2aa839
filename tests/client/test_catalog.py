"""Reading a catalog to index: CSV files and image folders, with errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import CSV_HEADER, DEV_SET, REPO, solid_jpeg, write

from imagesearch.client.catalog import CatalogError, load_catalog, load_csv, load_folder

# --- CSV catalogs -------------------------------------------------------------


def test_csv_quoting_multiline_and_json_attributes(tmp_path: Path) -> None:
    csv_path = write(
        tmp_path / "cat" / "catalog.csv",
        CSV_HEADER
        + (
            'p1,"Bishop, white ""Staunton"" style",symbols/chess,Acme,19.5,img/p1.jpg,"{""color"": ""white"", ""size"": 3, ""new"": true}"\n'
            'p2,"two\nlines",,,,/abs/p2.png,\n'
        ),
    )
    p1, p2 = load_csv(csv_path)
    assert p1.title == 'Bishop, white "Staunton" style'
    assert p1.category == "symbols/chess" and p1.brand == "Acme" and p1.price == 19.5
    # map<string, string> on the wire: scalars become their JSON spelling.
    assert p1.attributes == {"color": "white", "size": "3", "new": "true"}
    # Relative image paths are relative to the CSV's folder, not the working directory.
    assert p1.images == ((tmp_path / "cat").resolve() / "img" / "p1.jpg",)
    assert p2.title == "two\nlines" and p2.price == 0.0 and p2.attributes == {} and p2.images == (Path("/abs/p2.png"),)


def test_csv_with_only_the_dataset_columns_gets_defaults(tmp_path: Path) -> None:
    csv_path = write(
        tmp_path / "catalog.csv", "product_id,title,category,image\np9,An almond.,food/nuts,catalog/p9.jpg\n"
    )
    [item] = load_csv(csv_path)
    assert (item.product_id, item.title, item.category, item.brand, item.price, item.attributes) == (
        "p9",
        "An almond.",
        "food/nuts",
        "",
        0.0,
        {},
    )


def test_csv_byte_order_mark_and_blank_lines_are_tolerated(tmp_path: Path) -> None:
    csv_path = tmp_path / "catalog.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfproduct_id,image\r\np1,a.jpg\r\n,\r\n\r\np2,b.jpg\r\n")
    assert [i.product_id for i in load_csv(csv_path)] == ["p1", "p2"]


def test_csv_repeated_product_id_collects_its_images(tmp_path: Path) -> None:
    csv_path = write(
        tmp_path / "catalog.csv", "product_id,title,image\np1,Shoe,front.jpg\np2,Bag,bag.jpg\np1,,side.jpg\n"
    )
    p1, p2 = load_csv(csv_path)
    assert p1.title == "Shoe" and [p.name for p in p1.images] == ["front.jpg", "side.jpg"]
    assert p2.product_id == "p2"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ('p1,t,c,b,1,a.jpg,"{""color"": red}"', r"catalog\.csv:3: attributes is not valid JSON"),
        ('p1,t,c,b,1,a.jpg,"[1, 2]"', r"catalog\.csv:3: attributes must be a JSON object"),
        ('p1,t,c,b,1,a.jpg,"{""dims"": {""w"": 1}}"', r"catalog\.csv:3: attribute 'dims' must be a string"),
        ("p1,t,c,b,cheap,a.jpg,{}", r"catalog\.csv:3: price must be a number, got 'cheap'"),
        ("p1,t,c,b,-1,a.jpg,{}", r"catalog\.csv:3: price must be a finite number >= 0"),
        (",t,c,b,1,a.jpg,{}", r"catalog\.csv:3: empty product_id"),
        ("p1,t,c,b,1,,{}", r"catalog\.csv:3: product p1 has an empty image column"),
        ("p1,t,c,b,1,a.jpg,{},extra", r"catalog\.csv:3: more fields than the header"),
    ],
)
def test_csv_errors_name_the_line(tmp_path: Path, row: str, expected: str) -> None:
    csv_path = write(tmp_path / "catalog.csv", CSV_HEADER + "p0,ok,c,b,1,ok.jpg,{}\n" + row + "\n")
    with pytest.raises(CatalogError, match=expected):
        load_csv(csv_path)


def test_csv_error_line_counts_physical_lines(tmp_path: Path) -> None:
    # A quoted title spanning two lines pushes the next record to line 4.
    csv_path = write(
        tmp_path / "catalog.csv", CSV_HEADER + 'p0,"two\nlines",c,b,1,a.jpg,{}\np1,t,c,b,1,a.jpg,not-json\n'
    )
    with pytest.raises(CatalogError, match=r"catalog\.csv:4: "):
        load_csv(csv_path)


def test_csv_missing_required_column_is_explained(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "catalog.csv", "id,title,image\np1,t,a.jpg\n")
    with pytest.raises(CatalogError, match=r"catalog\.csv:1: missing column\(s\) product_id; header is id,title,image"):
        load_csv(csv_path)


def test_empty_and_non_utf8_files_are_explained(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="empty file"):
        load_csv(write(tmp_path / "empty.csv", ""))
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("product_id,title,image\np1,Caf\xe9,a.jpg\n".encode("latin-1"))
    with pytest.raises(CatalogError, match="not UTF-8"):
        load_csv(latin1)


def test_missing_source_is_explained(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no such file or folder"):
        load_catalog(tmp_path / "nope.csv")


def test_demo_and_dev_catalogs_load() -> None:
    demo = load_catalog(REPO / "demo" / "catalog.csv")
    assert len(demo) == 300 and all(i.images[0].is_file() for i in demo)
    assert any(i.brand for i in demo) and any(i.price for i in demo)
    if not (DEV_SET / "catalog.csv").exists():
        pytest.skip(f"dev dataset not found at {DEV_SET}")
    dev = load_catalog(DEV_SET / "catalog.csv")
    assert len(dev) == 340 and all(i.brand == "" and i.price == 0.0 for i in dev)
    assert all(i.images[0].is_file() for i in dev)


# --- folder catalogs ------------------------------------------------------------


def test_folder_ids_titles_and_categories(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    solid_jpeg(root / "top.jpg", (255, 0, 0))
    solid_jpeg(root / "shoes" / "boot-1.JPG", (0, 255, 0))
    solid_jpeg(root / "bags" / "leather" / "tote.png", (0, 0, 255))
    write(root / "shoes" / "notes.txt", "not an image")
    solid_jpeg(root / ".thumbs" / "hidden.jpg", (0, 0, 0))
    items = {i.product_id: i for i in load_folder(root)}
    assert set(items) == {"top", "boot-1", "tote"}
    assert items["top"].category == "" and items["boot-1"].category == "shoes"
    assert items["tote"].category == "bags/leather" and items["tote"].title == "tote"
    assert items["tote"].images == ((root / "bags" / "leather" / "tote.png").resolve(),)


def test_folder_duplicate_stems_and_empty_folders_are_errors(tmp_path: Path) -> None:
    solid_jpeg(tmp_path / "a" / "same.jpg", (1, 1, 1))
    solid_jpeg(tmp_path / "b" / "same.jpg", (2, 2, 2))
    with pytest.raises(CatalogError, match=r"two images would get product id 'same': a/same\.jpg and b/same\.jpg"):
        load_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogError, match="no images found"):
        load_folder(tmp_path / "empty")
