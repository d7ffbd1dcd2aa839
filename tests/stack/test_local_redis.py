"""LocalRedis: a private redis-server on a free port, for `imagesearch up` and the tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis

from imagesearch.stack.ports import free_port
from imagesearch.stack.redis import LocalRedis, RedisStartError, redis_reachable

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not on PATH")


def test_starts_on_a_free_port_answers_and_stops(tmp_path: Path) -> None:
    server = LocalRedis(dir=tmp_path / "redis")
    server.start()
    try:
        assert server.port > 0 and server.url == f"redis://127.0.0.1:{server.port}/0"
        assert redis_reachable(server.url)
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        # Persistence is off: a cache must not outlive its stack.
        assert client.config_get("save")["save"] == "" and client.config_get("appendonly")["appendonly"] == "no"
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        client.close()
        assert (tmp_path / "redis" / "redis.log").is_file()
    finally:
        server.stop()
    assert not server.running
    assert not redis_reachable(server.url)
    server.stop()  # a second stop is harmless


def test_context_manager_and_temporary_dir_cleanup() -> None:
    with LocalRedis() as server:
        assert redis_reachable(server.url)
        workdir = server.dir
        assert workdir is not None and workdir.is_dir()
    assert not redis_reachable(server.url)
    assert not workdir.exists()


def test_two_servers_get_different_ports(tmp_path: Path) -> None:
    with LocalRedis(dir=tmp_path / "a") as first, LocalRedis(dir=tmp_path / "b") as second:
        assert first.port != second.port
        assert redis_reachable(first.url) and redis_reachable(second.url)


def test_explicit_port_is_used(tmp_path: Path) -> None:
    port = free_port()
    with LocalRedis(port=port, dir=tmp_path) as server:
        assert server.port == port and redis_reachable(f"redis://127.0.0.1:{port}")


def test_a_port_already_taken_fails_with_the_log_tail(tmp_path: Path) -> None:
    with LocalRedis(dir=tmp_path / "a") as first:
        clash = LocalRedis(port=first.port, dir=tmp_path / "b")
        with pytest.raises(RedisStartError, match=r"redis-server exited with code \d+; log .*redis\.log:\n"):
            clash.start(timeout=10)
        assert not clash.running
        assert redis_reachable(first.url)  # the first one is untouched


def test_missing_binary_is_explained(tmp_path: Path) -> None:
    with pytest.raises(RedisStartError, match="no-such-redis-server not found on PATH"):
        LocalRedis(dir=tmp_path, binary="no-such-redis-server").start()


def test_redis_reachable_is_false_for_nothing_listening_and_bad_urls() -> None:
    assert not redis_reachable(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    assert not redis_reachable("not a url")
