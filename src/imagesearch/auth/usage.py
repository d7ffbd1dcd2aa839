"""When each API key was last used: noted by the gateways in Redis, read by `imagesearch keys list`.

Best effort by design: Redis is a cache, so a lost or unreachable Redis loses only this (the
audit log still has every use); nothing decides access by it. Each gateway notes a key at most
once per `NOTE_EVERY_SECONDS`, so busy keys cost one write a minute per replica.
"""

from __future__ import annotations

NOTE_EVERY_SECONDS = 60.0


def usage_key(namespace: str) -> str:
    """The Redis hash (key id -> Unix seconds) of one deployment (CACHE_NAMESPACE)."""
    return f"{namespace}:keys:last_used"


def read_last_used(redis_url: str, namespace: str, timeout: float = 1.0) -> dict[str, float]:
    """What the gateways noted; raises the client's error when Redis cannot be read."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        raw = client.hgetall(usage_key(namespace))
    finally:
        client.close()
    used: dict[str, float] = {}
    for key_id, stamp in raw.items():
        try:
            used[key_id.decode() if isinstance(key_id, bytes) else str(key_id)] = float(stamp)
        except (TypeError, ValueError):
            continue  # not ours: ignored
    return used
