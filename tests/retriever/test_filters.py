"""Filter expressions: exact text for the grammar, safety against hostile values, and a real round trip."""

from __future__ import annotations

import codecs
import re
import uuid

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common.types import FilterSpec, ModelId, ProductRecord
from imagesearch_retriever.milvus.expressions import build_expression, quote
from imagesearch_retriever.milvus.store import MilvusOptions, MilvusStore
from imagesearch_retriever.store import VectorQuery

HOSTILE = [
    'a"b',
    "a\\b",
    '" or 1==1 or "',
    '") || (price >= 0',
    '"] || category in ["',
    "\\",
    "trailing\\",
    '\\"',
    "x\\n",
    "line\nbreak",
    "tab\there",
    "\r\n",
    "it's",
    "ünïcødé",
    "😀 emoji",
    "数字",
    "\u2028line separator",
    "%_like_",
    'attributes["k"]',
    "",
]
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


# ---- against the real Milvus

DIM = 8
MODEL = ModelId("filter-test", "1", DIM)


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


async def test_hostile_strings_match_only_their_literal_product(milvus_uri: str) -> None:
    """Each hostile value, used as category, brand and attribute filter, matches exactly its own product."""
    rng = np.random.default_rng(7)
    options = MilvusOptions(milvus_uri, collection_prefix=f"f{uuid.uuid4().hex[:10]}", timeout_seconds=30)
    store = MilvusStore(options, TracerProvider())
    await store.connect()
    try:
        owner = {value: f"p{i}" for i, value in enumerate(HOSTILE)}
        products = [
            (
                ProductRecord(pid, title=value, category=value, brand=value, price=1.0, attributes={"k": value}),
                [(f"uri-{pid}", _unit(rng))],
            )
            for value, pid in owner.items()
        ]
        # Decoys that a broken escape or a LIKE-style match would let through.
        products.append(
            (ProductRecord("decoy1", category="a", brand="b", attributes={"k": "ab"}), [("d1", _unit(rng))])
        )
        products.append(
            (ProductRecord("decoy2", category="a\\\\b", brand='a""b', attributes={"k": "x"}), [("d2", _unit(rng))])
        )
        assert await store.upsert("", MODEL, products) == (len(products), len(products))

        query = [_unit(rng)]
        for value, pid in owner.items():
            for spec in (
                FilterSpec(categories=(value,)),
                FilterSpec(brands=(value,)),
                FilterSpec(attributes=(("k", (value,)),)),
            ):
                pages = await store.search("", MODEL, VectorQuery(query, limit=100, spec=spec))
                assert [m.product_id for m in pages[0]] == [pid], (value, spec)
                assert pages[0][0].category == value
            product = await store.get("", MODEL, pid)
            assert product is not None and product.category == value
    finally:
        await store.close()
