"""Filter expressions: exact text for the grammar, and safety against hostile values (tests/retriever/test_filters_in_milvus.py runs them against Milvus)."""

from __future__ import annotations

import codecs
import re

import pytest
from support import HOSTILE_STRINGS as HOSTILE

from imagesearch.common.types import FilterSpec
from imagesearch_retriever.milvus.expressions import build_expression, quote

# One literal: a quote, then escapes or anything but a quote/backslash, then a quote.
LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')


def unquote(literal: str) -> str:
    """What Milvus (Go's strconv.Unquote) reads from one of our literals."""
    assert LITERAL.fullmatch(literal), literal
    body = literal[1:-1]
    assert body.isascii()
    return codecs.decode(body, "unicode_escape")


@pytest.mark.parametrize("value", HOSTILE)
def test_quote_round_trips_and_never_ends_early(value: str) -> None:
    literal = quote(value)
    assert unquote(literal) == value
    assert "\n" not in literal and "\r" not in literal


def test_empty_filter_is_empty_expression() -> None:
    assert build_expression(FilterSpec()) == ""


def test_grammar() -> None:
    spec = FilterSpec(
        categories=("shoes", "bags"),
        brands=("acme",),
        price_min=10.0,
        price_max=99.5,
        attributes=(("color", ("red", "blue")), ("size.eu", ("42",))),
    )
    assert build_expression(spec, exclude_product_id="p1") == (
        '(category in ["shoes", "bags"]) && (brand in ["acme"]) && (price >= 10.0 && price <= 99.5)'
        ' && (attributes["color"] in ["red", "blue"]) && (attributes["size.eu"] in ["42"])'
        ' && (product_id != "p1")'
    )


def test_open_price_bounds() -> None:
    assert build_expression(FilterSpec(price_min=1.5)) == "(price >= 1.5)"
    assert build_expression(FilterSpec(price_max=0)) == "(price <= 0.0)"
    assert build_expression(FilterSpec(price_min=-3e20)) == "(price >= -3e+20)"


def test_hostile_values_stay_inside_their_literal() -> None:
    expr = build_expression(FilterSpec(categories=tuple(HOSTILE)))
    # Remove every literal: what remains is the fixed skeleton, whatever the values were.
    skeleton = LITERAL.sub("L", expr)
    assert skeleton == "(category in [" + ", ".join("L" for _ in HOSTILE) + "])"
    assert [unquote(m) for m in LITERAL.findall(expr)] == HOSTILE


def test_good_attribute_keys() -> None:
    assert build_expression(FilterSpec(attributes=(("A-b_c.9", ("v",)),))) == '(attributes["A-b_c.9"] in ["v"])'


def test_excluded_product_id_is_quoted() -> None:
    assert build_expression(FilterSpec(), exclude_product_id='x" || "1') == '(product_id != "x\\" || \\"1")'
