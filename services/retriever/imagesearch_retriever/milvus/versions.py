"""Versioned product writes: what makes a product the old version or the new one, never a mix.

Every write gets a *version*: milliseconds since the epoch shifted left 20 bits, plus 20 random
bits, so versions of writes on any replica order by when they started (to the clock's precision)
and two writes never share one. A product is stored as

* image rows, each carrying the version of the write that made it (primary key
  `<product_id>#<version>#<index>`), and
* head rows in a small companion collection, one per committed write (`<product_id>#<version>`),
  `deleted` true for a delete (a tombstone).

The product's committed version is its newest head; only image rows of exactly that version are
visible (to searches, GetProduct, more-like-this), and none when that head is a tombstone. A
write inserts its image rows, waits until they are applied, then inserts all its heads in one
request: the commit point, atomic for every product of the request. Clean-up afterwards deletes
rows and heads older than the committed version, and orphans (rows newer than it whose write
never committed) once they are older than ORPHAN_AGE_MS.

Concurrent writers of one product need no lock: the newer version wins whichever commits last,
and no clean-up removes a row of a version at or above the committed one, except orphans that
old. A crash between steps leaves rows no head points at (invisible, cleaned later) or old rows
a newer head hides: the product is the old version or the new one.

Pure logic: the Milvus adapter (store.py) reads and writes the rows.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

VERSION_RANDOM_BITS = 20
# A write whose rows are this old and still uncommitted has died (its caller's deadline and the
# retriever's own are far shorter): its rows are orphans, deleted by the next clean-up.
ORPHAN_AGE_MS = 10 * 60 * 1000


def new_version(now_ms: int | None = None, random_bits: int | None = None) -> int:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    bits = secrets.randbits(VERSION_RANDOM_BITS) if random_bits is None else random_bits
    return (now << VERSION_RANDOM_BITS) | bits


def version_time_ms(version: int) -> int:
    """When the write of `version` started, in milliseconds since the epoch."""
    return version >> VERSION_RANDOM_BITS


@dataclass(frozen=True)
class Head:
    """One committed write of a product: a new version of it, or its deletion."""

    product_id: str
    version: int
    deleted: bool = False

    @property
    def head_id(self) -> str:
        return head_id(self.product_id, self.version)


def head_id(product_id: str, version: int) -> str:
    return f"{product_id}#{version}"


def image_id(product_id: str, version: int, index: int) -> str:
    return f"{product_id}#{version}#{index}"


def committed(heads: Iterable[Head]) -> dict[str, Head]:
    """The newest head of each product."""
    newest: dict[str, Head] = {}
    for head in heads:
        held = newest.get(head.product_id)
        if held is None or head.version > held.version:
            newest[head.product_id] = head
    return newest


def live_versions(heads: Iterable[Head]) -> dict[str, int]:
    """The visible version of each product that has one (its newest head is not a deletion)."""
    return {pid: head.version for pid, head in committed(heads).items() if not head.deleted}


@dataclass(frozen=True)
class StoredRow:
    """What clean-up needs to know of an image row."""

    image_id: str
    product_id: str
    version: int


def stale_rows(rows: Iterable[StoredRow], newest: dict[str, Head], now_ms: int) -> list[str]:
    """Image rows no reader will ever see again: older than their product's committed version, or
    newer but orphaned (uncommitted for ORPHAN_AGE_MS). A product with no head at all keeps
    rows younger than that: its first write may be about to commit."""
    stale = []
    for row in rows:
        head = newest.get(row.product_id)
        if (head is not None and row.version < head.version) or (
            (head is None or row.version > head.version) and now_ms - version_time_ms(row.version) > ORPHAN_AGE_MS
        ):
            stale.append(row.image_id)
        elif head is not None and head.deleted and row.version == head.version:
            stale.append(row.image_id)  # cannot happen (a delete writes no rows); never visible anyway
    return stale


def stale_heads(heads: Iterable[Head], newest: dict[str, Head]) -> list[str]:
    """Heads older than their product's newest: the newest alone decides."""
    return [head.head_id for head in heads if head.version < newest[head.product_id].version]
