"""Sizes and counts that several parts enforce, and the checks that go with them.

Written once so they cannot drift: the gateway refuses what the retriever could not store, the
CLI refuses what the gateway would refuse, and a test pins none of them by copy. Every text limit
counts **UTF-8 bytes**, the unit of the store's VARCHAR fields (a 256-byte product id is 64 to 256
characters). Violations raise `InvalidArgument` with a message naming the field.
"""

from __future__ import annotations

import re

from imagesearch.common.errors import InvalidArgument

# ---- searches
DEFAULT_TOP_K = 10
# What the public API (and so the CLI) accepts. The retriever's own cap is a setting that may be
# raised for other internal callers (RETRIEVER_MAX_TOP_K), never below this.
MAX_TOP_K = 100

# ---- products, as the retriever stores them
MAX_PRODUCT_ID_BYTES = 256
MAX_TITLE_BYTES = 2048
MAX_CATEGORY_BYTES = 256
MAX_BRAND_BYTES = 256
MAX_IMAGE_URI_BYTES = 2048
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_VALUE_BYTES = 256
ATTRIBUTE_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Rows (indexed images) per product. The gateway indexes every catalog image twice when it adds
# object crops, so its per-product image limit must stay within half of this.
MAX_ROWS_PER_PRODUCT = 128

# ---- catalog writes, per request: a write holds its request (and, at the gateway, every image's
# vectors) until it is done, so the count is bounded as well as the message size.
MAX_PRODUCTS_PER_UPSERT = 256
MAX_IDS_PER_DELETE = 1024

# ---- filters
MAX_VALUES_PER_CLAUSE = 256
MAX_ATTRIBUTE_CLAUSES = 32

# ---- vector searches
# Vectors in one search whose products rank at their best over all of them (the gateway's zoom tiles
# send 8: each tile and the crop found in it).
MAX_VECTORS_PER_SEARCH = 16

# ---- embedding requests
# Images in one Embed request (the embedder's default cap); the gateway sends at most Triton's
# max_batch_size (32) per call, well inside it.
MAX_IMAGES_PER_EMBED_REQUEST = 64

# ---- catalogs (ASCII names, so characters are bytes)
MAX_CATALOG_CHARS = 48
_CATALOG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")

# Unicode category Cc (C0, DEL, C1) except tab, newline and CR; and lone surrogates (Cs): text
# that cannot be stored, or matched, faithfully.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def show(value: str, limit: int = 40) -> str:
    """A short, escaped rendering of a caller's value for error messages."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def check_text(value: str, what: str, max_bytes: int, *, allow_empty: bool = True) -> None:
    """Refuse text with control characters or lone surrogates, or longer than `max_bytes` of UTF-8."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string")
    if not value and not allow_empty:
        raise InvalidArgument(f"{what} must not be empty")
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        raise InvalidArgument(
            f"{what} contains a non-printable character U+{ord(bad.group()):04X} at position {bad.start()}: {show(value)}"
        )
    size = len(value.encode("utf-8"))
    if size > max_bytes:
        raise InvalidArgument(
            f"{what} is {size} bytes long; at most {max_bytes} bytes (UTF-8) are allowed: {show(value)}"
        )


def check_product_id(product_id: str, what: str = "product_id") -> str:
    check_text(product_id, what, MAX_PRODUCT_ID_BYTES, allow_empty=False)
    return product_id


def check_attribute_key(key: str, what: str = "attribute key") -> None:
    if not isinstance(key, str) or not ATTRIBUTE_KEY.fullmatch(key):
        raise InvalidArgument(f"{what} must match {ATTRIBUTE_KEY.pattern}, got {show(str(key))}")


def check_count(count: int, what: str, limit: int) -> None:
    """A request's list of `what` must hold 1 to `limit` entries."""
    if count == 0:
        raise InvalidArgument(f"{what} must not be empty")
    if count > limit:
        raise InvalidArgument(f"the request has {count} {what}; at most {limit} per request: split it into batches")


def check_top_k(top_k: int, maximum: int = MAX_TOP_K) -> int:
    """`top_k`, with 0 meaning DEFAULT_TOP_K (capped at `maximum`)."""
    top_k = top_k or min(DEFAULT_TOP_K, maximum)
    if not 1 <= top_k <= maximum:
        raise InvalidArgument(f"top_k must be between 1 and {maximum}, got {top_k}")
    return top_k


def check_catalog(name: str) -> str:
    """A catalog name: "" (the default catalog) or 1-48 characters of [a-z0-9_]."""
    if name and (len(name) > MAX_CATALOG_CHARS or not set(name) <= _CATALOG_CHARS):
        raise InvalidArgument(
            f"catalog must be 1-{MAX_CATALOG_CHARS} characters of a-z, 0-9 and _ (or empty for the default), "
            f"got {name[:64]!r}"
        )
    return name


def check_min_score(min_score: float) -> float:
    """A cosine threshold: finite, in [-1, 1]."""
    if not (-1.0 <= min_score <= 1.0):  # also False for NaN
        raise InvalidArgument(f"min_score must lie in [-1, 1], got {min_score}")
    return min_score
