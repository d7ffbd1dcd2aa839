"""Typed filters -> Milvus boolean expressions, with every value passed safely.

Milvus has no bound parameters that work on the 2.3 server (`filter_params`
does not), so values are written into the expression as string literals.
Milvus' parser (ANTLR grammar `Plan.g4`, then Go's `strconv.Unquote`) reads
C/Go-style escapes, so we emit an ASCII-only double-quoted literal: `"` and
`\\` are backslash-escaped, tab/newline/carriage return become `\\t \\n \\r`,
and every non-ASCII character becomes `\\uXXXX` / `\\UXXXXXXXX`. Nothing a
caller sends can end the literal early, so a value can only ever be compared
as the exact string it is.

Grammar produced (every set clause must hold; inside a clause any value may match):

    expr      := clause ( " && " clause )*
    clause    := "(" field " in [" literal ("," literal)* "])"
               | "(price >= " number [" && price <= " number] ")"  (either bound may be open)
               | "(product_id != " literal ")"                     (more-like-this only)
    field     := "category" | "brand" | "attributes[" literal "]"  (a JSON key)

Values are rejected (InvalidArgument) rather than escaped when they carry
control characters other than tab/newline/CR, lone surrogates, or more bytes
than the stored field can hold; attribute keys must match `[A-Za-z0-9_.-]{1,64}`.
"""

from __future__ import annotations

import math

from imagesearch.common.errors import InvalidArgument
from imagesearch.common.types import FilterSpec
from imagesearch.contracts.limits import (
    MAX_ATTRIBUTE_CLAUSES,
    MAX_ATTRIBUTE_VALUE_BYTES,
    MAX_BRAND_BYTES,
    MAX_CATEGORY_BYTES,
    MAX_VALUES_PER_CLAUSE,
    check_attribute_key,
    check_product_id,
    check_text,
)

MAX_EXPRESSION_CHARS = 512 * 1024
_SIMPLE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(value: str) -> str:
    """An ASCII-only Milvus string literal for an already validated value."""
    out = ['"']
    for char in value:
        code = ord(char)
        if char in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[char])
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _number(value: float, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgument(f"{what} must be a finite number, got {value!r}")
    return repr(float(value))  # e.g. "12.5", "1e+16", "-0.001": all valid Milvus float constants


def _in_clause(field: str, values: tuple[str, ...], what: str, max_bytes: int) -> str:
    if not values:
        raise InvalidArgument(f"{what} filter has no values")
    if len(values) > MAX_VALUES_PER_CLAUSE:
        raise InvalidArgument(f"{what} filter has {len(values)} values; at most {MAX_VALUES_PER_CLAUSE} are allowed")
    for value in values:
        check_text(value, f"{what} filter value", max_bytes)
    return f"({field} in [{', '.join(quote(v) for v in values)}])"


def build_expression(spec: FilterSpec, exclude_product_id: str | None = None) -> str:
    """The Milvus expression for `spec` ("" when it restricts nothing)."""
    clauses: list[str] = []
    if spec.categories:
        clauses.append(_in_clause("category", tuple(spec.categories), "category", MAX_CATEGORY_BYTES))
    if spec.brands:
        clauses.append(_in_clause("brand", tuple(spec.brands), "brand", MAX_BRAND_BYTES))
    if spec.price_min is not None or spec.price_max is not None:
        bounds: list[str] = []
        if spec.price_min is not None:
            bounds.append(f"price >= {_number(spec.price_min, 'price.min')}")
        if spec.price_max is not None:
            bounds.append(f"price <= {_number(spec.price_max, 'price.max')}")
        if spec.price_min is not None and spec.price_max is not None and spec.price_min > spec.price_max:
            raise InvalidArgument(f"price.min ({spec.price_min}) must not exceed price.max ({spec.price_max})")
        clauses.append(f"({' && '.join(bounds)})")
    if len(spec.attributes) > MAX_ATTRIBUTE_CLAUSES:
        raise InvalidArgument(f"{len(spec.attributes)} attribute filters; at most {MAX_ATTRIBUTE_CLAUSES} are allowed")
    for key, values in spec.attributes:
        check_attribute_key(key, "attribute filter key")
        # Keys are restricted to a safe charset above, and quoted anyway.
        clauses.append(
            _in_clause(f"attributes[{quote(key)}]", tuple(values), f"attribute {key!r}", MAX_ATTRIBUTE_VALUE_BYTES)
        )
    if exclude_product_id is not None:
        check_product_id(exclude_product_id)
        clauses.append(f"(product_id != {quote(exclude_product_id)})")
    expression = " && ".join(clauses)
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise InvalidArgument(
            f"filter is too large ({len(expression)} characters once encoded; at most {MAX_EXPRESSION_CHARS})"
        )
    return expression
