"""API keys, their file and the rate buckets (pure logic, no servers)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from imagesearch.auth.keys import (
    ALL_CATALOGS,
    DEFAULT_CATALOG,
    KeyFile,
    KeyFileError,
    MalformedKey,
    Scope,
    bearer_token,
    new_key,
    split_token,
)
from imagesearch.auth.local import ensure_admin_key
from imagesearch.auth.rates import RateLimiter


def test_a_key_is_kept_only_as_a_hash_and_proves_itself() -> None:
    record, token = new_key([Scope.SEARCH], ["shop_a"])
    key_id, secret = split_token(token)
    assert key_id == record.id and secret not in json.dumps(record.to_json())
    assert record.proves(secret) and not record.proves(secret[:-1] + ("A" if secret[-1] != "A" else "B"))


def test_scopes_and_catalogs() -> None:
    search, _ = new_key([Scope.SEARCH], ["shop_a", DEFAULT_CATALOG])
    assert search.allows(Scope.SEARCH) and not search.allows(Scope.WRITE) and not search.allows(Scope.ADMIN)
    assert search.reaches("shop_a") and search.reaches("") and not search.reaches("shop_b")
    admin, _ = new_key([Scope.ADMIN], [ALL_CATALOGS])
    assert all(admin.allows(s) for s in Scope) and admin.reaches("anything")


@pytest.mark.parametrize("bad", ["", "Bearer", "Basic abc", "Bearer isk_1234_x", "Bearer " + "isk_" + "0" * 200])
def test_malformed_credentials_are_told_apart_from_wrong_ones(bad: str) -> None:
    with pytest.raises(MalformedKey):
        split_token(bearer_token(bad))


def test_the_key_file_round_trips_is_private_and_revokes(tmp_path: Path) -> None:
    store = KeyFile(tmp_path / "keys.json")
    record, token = new_key([Scope.WRITE], [DEFAULT_CATALOG, "shop_a"], name="ingest", rate_per_second=5)
    store.add(record)
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600
    ring = store.load()
    assert ring.find(token) == (record, "")
    store.revoke(record.id)
    found, why = store.load().find(token)
    assert found is None and "revoked" in why


def test_a_broken_key_file_is_named_not_half_read(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    for text in ("{", '{"version": 2, "keys": []}', '{"version": 1, "keys": [{"id": "x"}]}'):
        path.write_text(text)
        with pytest.raises(KeyFileError, match=r"keys\.json|malformed"):
            KeyFile(path).load()


def test_the_local_stack_keeps_one_admin_key_and_replaces_a_dead_one(tmp_path: Path) -> None:
    keys, token_file, created = ensure_admin_key(tmp_path)
    assert created and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert ensure_admin_key(tmp_path) == (keys, token_file, False)  # reused
    key_id, _ = split_token(token)
    KeyFile(keys).revoke(key_id)
    _, _, created = ensure_admin_key(tmp_path)
    assert created and token_file.read_text().strip() != token


def test_rate_buckets_allow_a_burst_then_the_rate_and_say_how_long_to_wait() -> None:
    limiter = RateLimiter()
    assert [limiter.take("k", 2.0, 4.0, 0.0) for _ in range(4)] == [0.0] * 4
    wait = limiter.take("k", 2.0, 4.0, 0.0)
    assert wait == pytest.approx(0.5)
    assert limiter.take("k", 2.0, 4.0, 0.5) == 0.0  # a token came back
    assert limiter.take("other", 2.0, 4.0, 0.0) == 0.0  # buckets are per caller


def test_the_bucket_table_is_bounded() -> None:
    limiter = RateLimiter(max_callers=10)
    for i in range(100):
        limiter.take(f"peer-{i}", 1.0, 1.0, 0.0)
    assert len(limiter._buckets) == 10
