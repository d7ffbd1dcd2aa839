"""Everything the retriever checks before a store sees a request: once, at the core's boundary.

Products are checked against the schema's limits (`imagesearch.contracts.limits`, UTF-8 bytes)
and their vectors normalised; filters are checked value by value, so the expression the Milvus
adapter writes never holds text that cannot be matched faithfully.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from imagesearch.common.errors import InvalidArgument
from imagesearch.common.types import FilterSpec, Floats, ModelId, ProductRecord
from imagesearch.contracts.limits import (
    MAX_ATTRIBUTE_CLAUSES,
    MAX_ATTRIBUTE_VALUE_BYTES,
    MAX_ATTRIBUTES,
    MAX_BRAND_BYTES,
    MAX_CATEGORY_BYTES,
    MAX_IMAGE_URI_BYTES,
    MAX_ROWS_PER_PRODUCT,
    MAX_TITLE_BYTES,
    MAX_VALUES_PER_CLAUSE,
    check_attribute_key,
    check_product_id,
    check_text,
)
from imagesearch_retriever.store import Image

MAX_DIMENSION = 32768  # Milvus' FLOAT_VECTOR limit
MAX_MODEL_FIELD_BYTES = 128


def validate_model(model: ModelId) -> None:
    for label, value in (("model.name", model.name), ("model.version", model.version)):
        check_text(value, label, MAX_MODEL_FIELD_BYTES, allow_empty=False)
    if not 1 <= model.dimension <= MAX_DIMENSION:
        raise InvalidArgument(f"model.dimension must be between 1 and {MAX_DIMENSION}, got {model.dimension}")


def normalised(vector: Floats, dimension: int, what: str) -> Floats:
    """A float32 unit vector, or InvalidArgument (wrong size, non-finite, zero)."""
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    if v.shape[0] != dimension:
        raise InvalidArgument(f"{what} has {v.shape[0]} values; the model's dimension is {dimension}")
    if not np.all(np.isfinite(v)):
        raise InvalidArgument(f"{what} contains non-finite values")
    norm = float(np.linalg.norm(v))
    if norm == 0.0 or not math.isfinite(norm):
        raise InvalidArgument(f"{what} has zero length")
    # Embedders send unit vectors already; re-normalising keeps IP a true cosine in [-1, 1].
    return v / norm


def validate_product(product: ProductRecord, images: Sequence[Image], dimension: int) -> list[Image]:
    """Check a product against the schema limits; return its images with unit vectors."""
    pid = product.product_id
    check_product_id(pid)
    check_text(product.title, f"product {pid!r}: title", MAX_TITLE_BYTES)
    check_text(product.category, f"product {pid!r}: category", MAX_CATEGORY_BYTES)
    check_text(product.brand, f"product {pid!r}: brand", MAX_BRAND_BYTES)
    if (
        isinstance(product.price, bool)
        or not isinstance(product.price, int | float)
        or not math.isfinite(product.price)
    ):
        raise InvalidArgument(f"product {pid!r}: price must be a finite number, got {product.price!r}")
    if len(product.attributes) > MAX_ATTRIBUTES:
        raise InvalidArgument(f"product {pid!r}: {len(product.attributes)} attributes; at most {MAX_ATTRIBUTES}")
    for key, value in product.attributes.items():
        check_attribute_key(key, f"product {pid!r}: attribute key")
        check_text(value, f"product {pid!r}: attribute {key!r}", MAX_ATTRIBUTE_VALUE_BYTES)
    if not images:
        raise InvalidArgument(f"product {pid!r} has no images; a product is indexed through its images")
    if len(images) > MAX_ROWS_PER_PRODUCT:
        raise InvalidArgument(f"product {pid!r} has {len(images)} images; at most {MAX_ROWS_PER_PRODUCT}")
    checked = []
    for index, (uri, vector) in enumerate(images):
        check_text(uri, f"product {pid!r}: image {index} uri", MAX_IMAGE_URI_BYTES)
        checked.append((uri, normalised(vector, dimension, f"product {pid!r}: image {index} vector")))
    return checked


def _values(values: tuple[str, ...], what: str, max_bytes: int) -> None:
    if not values:
        raise InvalidArgument(f"{what} filter has no values")
    if len(values) > MAX_VALUES_PER_CLAUSE:
        raise InvalidArgument(f"{what} filter has {len(values)} values; at most {MAX_VALUES_PER_CLAUSE} are allowed")
    for value in values:
        check_text(value, f"{what} filter value", max_bytes)


def _number(value: float | None, what: str) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise InvalidArgument(f"{what} must be a finite number, got {value!r}")


def validate_filter(spec: FilterSpec) -> None:
    """Every clause that is set must have values the store can hold (a longer one could never match)."""
    if spec.categories:
        _values(spec.categories, "category", MAX_CATEGORY_BYTES)
    if spec.brands:
        _values(spec.brands, "brand", MAX_BRAND_BYTES)
    _number(spec.price_min, "price.min")
    _number(spec.price_max, "price.max")
    if spec.price_min is not None and spec.price_max is not None and spec.price_min > spec.price_max:
        raise InvalidArgument(f"price.min ({spec.price_min}) must not exceed price.max ({spec.price_max})")
    if len(spec.attributes) > MAX_ATTRIBUTE_CLAUSES:
        raise InvalidArgument(f"{len(spec.attributes)} attribute filters; at most {MAX_ATTRIBUTE_CLAUSES} are allowed")
    for key, values in spec.attributes:
        check_attribute_key(key, "attribute filter key")
        _values(values, f"attribute {key!r}", MAX_ATTRIBUTE_VALUE_BYTES)
