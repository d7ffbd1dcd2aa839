"""Typed filters -> Milvus boolean expressions, with every value passed safely.

Milvus has no bound parameters that work on the 2.3 server (`filter_params` does not), so values
are written into the expression as string literals. Milvus' parser (ANTLR grammar `Plan.g4`, then
Go's `strconv.Unquote`) reads C/Go-style escapes, so we emit an ASCII-only double-quoted literal:
`"` and `\\` are backslash-escaped, tab/newline/carriage return become `\\t \\n \\r`, and every
non-ASCII character becomes `\\uXXXX` / `\\UXXXXXXXX`. Nothing a caller sends can end the literal
early, so a value can only ever be compared as the exact string it is. (The values themselves
were checked by the core: `imagesearch_retriever.validation.validate_filter`.)

Grammar produced (every set clause must hold; inside a clause any value may match):

    expr      := clause ( " && " clause )*
    clause    := "(" field " in [" literal ("," literal)* "])"
               | "(price >= " number [" && price <= " number] ")"  (either bound may be open)
               | "(product_id != " literal ")"                     (more-like-this only)
    field     := "category" | "brand" | "attributes[" literal "]"  (a JSON key)
"""

from __future__ import annotations

from collections.abc import Sequence

from imagesearch.common.errors import InvalidArgument
from imagesearch.common.types import FilterSpec

MAX_EXPRESSION_CHARS = 512 * 1024
_SIMPLE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(value: str) -> str:
    """An ASCII-only Milvus string literal for any string."""
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


def in_list(field: str, values: Sequence[str]) -> str:
    return f"{field} in [{', '.join(quote(v) for v in values)}]"


def build_expression(spec: FilterSpec, exclude_product_id: str | None = None) -> str:
    """The Milvus expression for `spec` ("" when it restricts nothing)."""
    clauses: list[str] = []
    if spec.categories:
        clauses.append(f"({in_list('category', spec.categories)})")
    if spec.brands:
        clauses.append(f"({in_list('brand', spec.brands)})")
    if spec.price_min is not None or spec.price_max is not None:
        # repr of a finite float ("12.5", "1e+16", "-0.001") is a valid Milvus float constant.
        bounds = [
            f"price {op} {float(value)!r}"
            for op, value in ((">=", spec.price_min), ("<=", spec.price_max))
            if value is not None
        ]
        clauses.append(f"({' && '.join(bounds)})")
    for key, values in spec.attributes:
        # Keys are restricted to a safe charset, and quoted anyway.
        clauses.append(f"({in_list(f'attributes[{quote(key)}]', values)})")
    if exclude_product_id is not None:
        clauses.append(f"(product_id != {quote(exclude_product_id)})")
    expression = " && ".join(clauses)
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise InvalidArgument(
            f"filter is too large ({len(expression)} characters once encoded; at most {MAX_EXPRESSION_CHARS})"
        )
    return expression


def exact_versions(versions: dict[str, int]) -> str:
    """Rows of exactly these product versions: the committed version of each product named."""
    return (
        "("
        + " || ".join(
            f"(product_id == {quote(pid)} && version == {int(version)})" for pid, version in sorted(versions.items())
        )
        + ")"
    )


def both(first: str, second: str) -> str:
    """Two expressions that must both hold ("" restricts nothing)."""
    return f"({first}) && {second}" if first else second
