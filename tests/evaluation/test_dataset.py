"""The dataset loader reads the benchmark format, and the kind of variation of each query when it is given."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import write

from imagesearch.evaluation.dataset import DatasetError, load_dataset

CATALOG = (
    "product_id,title,category,image\npa,An apple.,food/fruit,catalog/pa.jpg\npb,A pear.,food/fruit,catalog/pb.jpg\n"
)
QUERIES = "query_id,image,product_id\nq1,queries/q1.jpg,pa\nq2,queries/q2.jpg,pb\n"


def dataset(folder: Path, meta: str | None = None) -> Path:
    write(folder / "catalog.csv", CATALOG)
    write(folder / "queries.csv", QUERIES)
    if meta is not None:
        write(folder / "queries_meta.csv", meta)
    return folder


def test_each_query_carries_its_variation_from_the_meta_file(tmp_path: Path) -> None:
    loaded = load_dataset(dataset(tmp_path, "query_id,variation,jpeg_q\nq1,occluded,50\nq2,clean,70\n"))
    assert [(q.query_id, q.variation) for q in loaded.queries] == [("q1", "occluded"), ("q2", "clean")]
    assert loaded.queries[0].image == tmp_path.resolve() / "queries" / "q1.jpg"


@pytest.mark.parametrize("meta", [None, "query_id,width,height\nq1,640,480\nq2,480,640\n"])
def test_no_meta_file_or_no_variation_column_means_no_variation(tmp_path: Path, meta: str | None) -> None:
    # The dev set's meta file has generation parameters but no `variation` column.
    assert {q.variation for q in load_dataset(dataset(tmp_path, meta)).queries} == {""}


def test_a_query_of_an_unknown_product_is_refused(tmp_path: Path) -> None:
    dataset(tmp_path)
    write(tmp_path / "queries.csv", "query_id,image,product_id\nq1,queries/q1.jpg,pz\n")
    with pytest.raises(DatasetError, match="pz"):
        load_dataset(tmp_path)
