"""The write-horizon scripts on a real Redis (the machine's, under a namespace of our own): a horizon
only rises, and one Redis may have lost is never trusted until it has been relearnt safely."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common.errors import Unavailable
from imagesearch_retriever.horizon import Horizons

URL = "redis://127.0.0.1:6379/0"
T = 470860893577281545  # a Milvus hybrid timestamp: beyond the exact integers of a double


@pytest.fixture
def horizons() -> Iterator[Horizons]:
    namespace = f"test-{uuid.uuid4().hex[:10]}"
    shared = Horizons(URL, namespace, 0.5, TracerProvider())
    yield shared
    client = redis.Redis.from_url(URL)
    for key in client.scan_iter(f"{namespace}:*"):
        client.delete(key)
    shared.close()


def other_replica(horizons: Horizons) -> Horizons:
    """A second process: same Redis and namespace, none of the first one's own maximum."""
    return Horizons(URL, horizons.key("x").split(":retriever:")[0], 0.5, TracerProvider())


def test_a_catalog_never_written_has_no_horizon(horizons: Horizons) -> None:
    assert horizons.read("c") is None


def test_a_write_makes_the_horizon_known_to_every_replica(horizons: Horizons) -> None:
    nonce = horizons.prepare("c")
    assert nonce and horizons.read("c") is None  # a placeholder: reads are Strong until the commit
    horizons.record("c", T, nonce)
    assert other_replica(horizons).read("c") == T


def test_the_horizon_only_rises_and_keeps_every_digit(horizons: Horizons) -> None:
    horizons.record("c", T, horizons.prepare("c"))
    reader = other_replica(horizons)
    horizons.record("c", T - 1, horizons.prepare("c"))  # a slower writer, committed earlier
    assert reader.read("c") == T
    horizons.record("c", T + 1, horizons.prepare("c"))
    assert reader.read("c") == T + 1


def test_a_write_recorded_into_a_placeholder_is_covered_when_it_is_settled(horizons: Horizons) -> None:
    # Two writers prepare while the horizon is unknown; the later commit records first.
    first, second = horizons.prepare("c"), other_replica(horizons).prepare("c")
    assert first == second
    other_replica(horizons).record("c", T + 5, "")  # not the placeholder's nonce: only remembered
    assert other_replica(horizons).read("c") is None
    horizons.record("c", T, first)
    assert other_replica(horizons).read("c") == T + 5


def test_a_horizon_from_another_redis_run_is_not_trusted(horizons: Horizons) -> None:
    horizons.record("c", T, horizons.prepare("c"))
    redis.Redis.from_url(URL).hset(horizons.key("c"), "r", "0" * 40)  # as after a restore or a failover
    assert other_replica(horizons).read("c") is None


def test_a_lost_horizon_is_not_recreated_from_an_older_write(horizons: Horizons) -> None:
    nonce = horizons.prepare("c")
    redis.Redis.from_url(URL).delete(horizons.key("c"))  # evicted between prepare and commit
    horizons.record("c", T, nonce)
    assert other_replica(horizons).read("c") is None  # T may predate the loss: not a horizon


def test_a_reader_relearns_a_lost_horizon_from_a_fresh_timestamp(horizons: Horizons) -> None:
    reader = other_replica(horizons)
    assert reader.read("c") is None
    reader.relearn("c", lambda: T + 100)
    assert horizons.read("c") == T + 100
    reader.relearn("c", lambda: pytest.fail("relearnt again within a second"))


def test_an_unreachable_redis_means_no_horizon_and_no_write() -> None:
    dead = Horizons("redis://127.0.0.1:1/0", "dead", 0.1, TracerProvider())
    assert dead.read("c") is None
    assert dead.breaker.is_open
    with pytest.raises(Unavailable, match="unavailable"):
        dead.prepare("c")
    dead.close()
