"""What the retriever refuses before a store sees it: filter values, products, models, vectors."""

from __future__ import annotations

import numpy as np
import pytest

from imagesearch.common.errors import InvalidArgument
from imagesearch.common.types import FilterSpec, ModelId, ProductRecord
from imagesearch.contracts.limits import MAX_ROWS_PER_PRODUCT, MAX_VALUES_PER_CLAUSE
from imagesearch_retriever.validation import normalised, validate_filter, validate_model, validate_product

DIM = 8


@pytest.mark.parametrize("value", ["nul\x00byte", "bell\x07", "del\x7f", "c1\x85", "esc\x1b[31m", "lone\ud800"])
def test_non_printable_values_are_rejected(value: str) -> None:
    with pytest.raises(InvalidArgument, match="non-printable"):
        validate_filter(FilterSpec(categories=(value,)))


def test_over_long_values_are_rejected_by_bytes() -> None:
    validate_filter(FilterSpec(brands=("x" * 256,)))  # fits
    with pytest.raises(InvalidArgument, match="257 bytes"):
        validate_filter(FilterSpec(brands=("x" * 257,)))
    with pytest.raises(InvalidArgument, match="at most 256 bytes"):
        validate_filter(FilterSpec(categories=("é" * 129,)))  # 258 bytes of UTF-8


def test_too_many_values_are_rejected() -> None:
    values = tuple(f"v{i}" for i in range(MAX_VALUES_PER_CLAUSE + 1))
    with pytest.raises(InvalidArgument, match="at most 256"):
        validate_filter(FilterSpec(categories=values))


@pytest.mark.parametrize("key", ["", "a b", 'k"]', "k]", "k[0]", "ключ", "x" * 65, "a\nb", "a'b"])
def test_bad_attribute_keys_are_rejected(key: str) -> None:
    with pytest.raises(InvalidArgument, match="attribute filter key"):
        validate_filter(FilterSpec(attributes=((key, ("v",)),)))


def test_attribute_clause_without_values_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="no values"):
        validate_filter(FilterSpec(attributes=(("color", ()),)))


@pytest.mark.parametrize(
    "spec",
    [
        FilterSpec(price_min=float("nan")),
        FilterSpec(price_max=float("inf")),
        FilterSpec(price_min=float("-inf")),
    ],
)
def test_non_finite_prices_are_rejected(spec: FilterSpec) -> None:
    with pytest.raises(InvalidArgument, match="finite"):
        validate_filter(spec)


def test_min_above_max_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="must not exceed"):
        validate_filter(FilterSpec(price_min=10, price_max=5))


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def test_a_product_may_have_two_rows_for_each_of_64_images() -> None:
    rng = np.random.default_rng(6)
    assert MAX_ROWS_PER_PRODUCT == 128
    rows = [(f"u{i % 64}", unit(rng)) for i in range(128)]
    assert len(validate_product(ProductRecord("p1"), rows, DIM)) == 128
    with pytest.raises(InvalidArgument, match="129 images; at most 128"):
        validate_product(ProductRecord("p1"), [*rows, ("u", unit(rng))], DIM)


@pytest.mark.parametrize(
    ("product", "fragment"),
    [
        (ProductRecord(""), "product_id must not be empty"),
        (ProductRecord("p", title="t" * 2049), "title is 2049 bytes long"),
        (ProductRecord("p", price=float("nan")), "price must be a finite number"),
        (ProductRecord("p", attributes={f"k{i}": "v" for i in range(65)}), "65 attributes; at most 64"),
        (ProductRecord("p", attributes={"bad key": "v"}), "attribute key must match"),
    ],
)
def test_products_outside_the_schema_are_refused(product: ProductRecord, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        validate_product(product, [("u", np.ones(DIM, np.float32))], DIM)


def test_vectors_are_normalised_and_bad_ones_refused() -> None:
    np.testing.assert_allclose(np.linalg.norm(normalised(np.full(DIM, 3.0), DIM, "v")), 1.0, rtol=1e-6)
    for bad, fragment in (
        (np.ones(3), "has 3 values"),
        (np.zeros(DIM), "zero length"),
        (np.full(DIM, np.nan), "non-finite"),
    ):
        with pytest.raises(InvalidArgument, match=fragment):
            normalised(bad, DIM, "v")


def test_models_must_name_themselves_and_fit_milvus() -> None:
    validate_model(ModelId("m", "1", DIM))
    for bad, fragment in ((ModelId("", "1", 4), "model.name must not be empty"), (ModelId("m", "1", 0), "dimension")):
        with pytest.raises(InvalidArgument, match=fragment):
            validate_model(bad)
