"""Which rows a reader sees, and which clean-up may delete (pure logic of versioned writes)."""

from __future__ import annotations

from imagesearch_retriever.milvus.versions import (
    ORPHAN_AGE_MS,
    Head,
    StoredRow,
    committed,
    live_versions,
    new_version,
    stale_heads,
    stale_rows,
    version_time_ms,
)

NOW = 1_800_000_000_000


def test_versions_order_by_start_time_and_never_collide() -> None:
    assert new_version(NOW, 5) < new_version(NOW + 1, 0)
    assert version_time_ms(new_version(NOW, 123)) == NOW
    assert len({new_version(NOW) for _ in range(1000)}) > 990  # 20 random bits within one millisecond
    assert new_version() < 2**63  # an INT64 for decades


def test_the_newest_head_decides_and_a_tombstone_hides_the_product() -> None:
    heads = [Head("a", 1), Head("a", 3), Head("a", 2), Head("b", 5), Head("b", 7, deleted=True), Head("c", 4)]
    assert committed(heads)["a"] == Head("a", 3)
    assert live_versions(heads) == {"a": 3, "c": 4}
    # A write older than the delete that commits after it cannot bring the product back.
    assert live_versions([*heads, Head("b", 6)]) == {"a": 3, "c": 4}


def test_clean_up_keeps_the_committed_version_and_anything_a_writer_may_still_commit() -> None:
    old, current, in_flight = new_version(NOW - 1000), new_version(NOW - 500), new_version(NOW - 10)
    abandoned = new_version(NOW - ORPHAN_AGE_MS - 1)
    newest = committed([Head("p", old), Head("p", current)])
    rows = [
        StoredRow("p#old", "p", old),
        StoredRow("p#current", "p", current),
        StoredRow("p#in-flight", "p", in_flight),  # a newer write, not committed yet
        StoredRow("q#first", "q", in_flight),  # q's first write, about to commit
        StoredRow("q#dead", "q", abandoned),  # a write that never committed
    ]
    assert sorted(stale_rows(rows, newest, NOW)) == ["p#old", "q#dead"]
    assert stale_heads([Head("p", old), Head("p", current)], newest) == [Head("p", old).head_id]


def test_after_a_delete_every_older_row_is_stale_and_the_tombstone_stays() -> None:
    kept, tomb = new_version(NOW - 100), new_version(NOW - 50)
    heads = [Head("p", kept), Head("p", tomb, deleted=True)]
    newest = committed(heads)
    assert stale_rows([StoredRow("p#1", "p", kept)], newest, NOW) == ["p#1"]
    assert stale_heads(heads, newest) == [Head("p", kept).head_id]
