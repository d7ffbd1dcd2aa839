"""The shared limits: one rule per field, counted in UTF-8 bytes, with a message that names the field."""

from __future__ import annotations

import pytest

from imagesearch.common.errors import InvalidArgument
from imagesearch.contracts import limits


def test_product_ids_are_counted_in_bytes_not_characters() -> None:
    assert limits.check_product_id("p" * limits.MAX_PRODUCT_ID_BYTES)
    assert limits.check_product_id("é" * (limits.MAX_PRODUCT_ID_BYTES // 2))  # 2 bytes each
    with pytest.raises(InvalidArgument, match=r"product_id is 258 bytes long; at most 256 bytes \(UTF-8\)"):
        limits.check_product_id("é" * 129)
    with pytest.raises(InvalidArgument, match="product_id must not be empty"):
        limits.check_product_id("")


@pytest.mark.parametrize("bad", ["nul\x00", "bell\x07", "del\x7f", "c1\x85", "lone\ud800"])
def test_text_that_cannot_be_stored_faithfully_is_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="title contains a non-printable character U\\+"):
        limits.check_text(bad, "title", limits.MAX_TITLE_BYTES)
    limits.check_text("tab\tnewline\ncr\r and emoji 🙂", "title", limits.MAX_TITLE_BYTES)


def test_top_k_min_score_catalog_and_attribute_keys() -> None:
    assert limits.check_top_k(0) == limits.DEFAULT_TOP_K and limits.check_top_k(limits.MAX_TOP_K) == 100
    assert limits.check_top_k(0, maximum=5) == 5
    for bad in (-1, limits.MAX_TOP_K + 1):
        with pytest.raises(InvalidArgument, match="top_k must be between 1 and 100"):
            limits.check_top_k(bad)
    for bad in (float("nan"), 1.5, -1.01):
        with pytest.raises(InvalidArgument, match=r"min_score must lie in \[-1, 1\]"):
            limits.check_min_score(bad)
    assert limits.check_catalog("") == "" and limits.check_catalog("shop_1") == "shop_1"
    for bad in ("Shop", "a-b", "x" * 49):
        with pytest.raises(InvalidArgument, match="catalog must be 1-48 characters"):
            limits.check_catalog(bad)
    limits.check_attribute_key("colour.primary-1_x")
    with pytest.raises(InvalidArgument, match="attribute key must match"):
        limits.check_attribute_key("has space")


def test_catalog_writes_are_bounded_per_request() -> None:
    limits.check_count(limits.MAX_PRODUCTS_PER_UPSERT, "products", limits.MAX_PRODUCTS_PER_UPSERT)
    with pytest.raises(InvalidArgument, match="products must not be empty"):
        limits.check_count(0, "products", limits.MAX_PRODUCTS_PER_UPSERT)
    with pytest.raises(InvalidArgument, match="the request has 1025 product_ids; at most 1024 per request"):
        limits.check_count(1025, "product_ids", limits.MAX_IDS_PER_DELETE)
