"""Authentication and authorisation of the public API, in one interceptor.

Every SearchService call must carry `authorization: Bearer <API key>`. Missing, malformed,
unknown or revoked: UNAUTHENTICATED. A valid key outside its scope or its catalogs:
PERMISSION_DENIED, worded the same whether the catalog exists or not, so a key learns nothing
about catalogs it may not touch. Over the key's rate: RESOURCE_EXHAUSTED with a retry hint
(`retry-after-ms` and gRPC's own `grpc-retry-pushback-ms` trailers, set by the error interceptor). A caller that keeps
presenting bad keys is refused RESOURCE_EXHAUSTED for a while (guessing is throttled per peer).
Health is never authenticated: probes and balancers must reach it.

Audit lines (logger `imagesearch.audit`) name the key id, never a secret: every refusal, every
write and admin call, and a key's first use after each reload.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from imagesearch.auth.keys import ApiKey, KeyFile, KeyFileError, KeyRing, MalformedKey, Scope, bearer_token
from imagesearch.auth.rates import RateLimiter
from imagesearch.auth.usage import NOTE_EVERY_SECONDS
from imagesearch.common.errors import PermissionDenied, ResourceExhausted, Unauthenticated
from imagesearch.common.files import stamp
from imagesearch.common.interceptors import with_unary

log = logging.getLogger(__name__)
audit = logging.getLogger("imagesearch.audit")

_SERVICE = "/imagesearch.v1.SearchService/"
# What each public RPC needs. An RPC missing here is refused: a new one must choose.
RPC_SCOPES: dict[str, Scope] = {
    _SERVICE + "Search": Scope.SEARCH,
    _SERVICE + "GetProduct": Scope.SEARCH,
    _SERVICE + "UpsertProducts": Scope.WRITE,
    _SERVICE + "DeleteProducts": Scope.WRITE,
    _SERVICE + "DeleteCatalog": Scope.ADMIN,
}
_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
MAX_AUTHORIZATION_CHARS = 512


@dataclass(frozen=True)
class AuthOptions:
    keys_file: Path
    reload_seconds: float = 5.0
    rate_per_second: float = 50.0  # a key's default; its own rate_per_second wins
    burst_seconds: float = 2.0  # a bucket holds this many seconds of its rate
    failures_per_minute: float = 30.0  # bad keys tolerated per peer before it is throttled


class KeyStore:
    """The key file as last read; re-read when it changed, checked at most every reload_seconds.

    A file that fails to parse (a half-made edit) keeps the keys read before, loudly: locking every
    caller out for a typo would be worse, and a revocation is retried at the next change.
    """

    def __init__(self, path: Path, reload_seconds: float) -> None:
        self._file = KeyFile(path)
        self._reload = reload_seconds
        self._ring = KeyRing()
        self._stamp: tuple[int, ...] | None = None
        self._checked = 0.0
        self.loaded_at = 0.0

    def load(self) -> KeyRing:
        """At start-up: the file must be there and sound."""
        self._stamp = self._stat()
        self._ring = self._file.load()
        self.loaded_at = time.monotonic()
        log.info("gateway: %d API keys from %s", len(self._ring.keys), self._file.path)
        return self._ring

    def _stat(self) -> tuple[int, ...] | None:
        return stamp(self._file.path)

    def ring(self, now: float) -> KeyRing:
        if now - self._checked >= self._reload:
            self._checked = now
            current = self._stat()
            if current != self._stamp:
                self._stamp = current
                try:
                    self._ring = self._file.load()
                    self.loaded_at = now
                    log.info("gateway: API keys reloaded from %s (%d keys)", self._file.path, len(self._ring.keys))
                except KeyFileError as err:
                    log.error("gateway: API keys NOT reloaded, the previous ones stay in force: %s", err)
        return self._ring


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Installed inside the error-mapping interceptor (its refusals are DomainErrors, mapped and
    logged like any other) and before admission control (an unauthenticated caller holds no slot)."""

    def __init__(
        self,
        options: AuthOptions,
        clock: Callable[[], float] = time.monotonic,
        on_use: Callable[[str, float], None] | None = None,
    ) -> None:
        self._options = options
        self._on_use = on_use  # (key id, Unix seconds): where "last used" is kept
        self._noted: dict[str, float] = {}  # key id -> when last handed to on_use (monotonic)
        self._store = KeyStore(options.keys_file, options.reload_seconds)
        self._rates = RateLimiter()
        self._failures = RateLimiter()
        self._clock = clock
        self._seen: dict[str, float] = {}  # key id -> when last audited as used

    def load(self) -> None:
        self._store.load()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_OPEN_PREFIXES):
            return handler
        scope = RPC_SCOPES.get(method)
        inner = handler.unary_unary
        if inner is None:
            return handler
        metadata = handler_call_details.invocation_metadata or ()

        async def authorised(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            key = self._authenticate(metadata, context.peer(), method)
            if scope is None or not key.allows(scope):
                self._refuse(key, method, "scope")
                raise PermissionDenied(
                    f"key {key.id} may not call {method.rsplit('/', 1)[-1]}"
                    + (f" (it needs the {scope} scope)" if scope else "")
                )
            catalog = getattr(request, "catalog", "")
            if not key.reaches(catalog):
                self._refuse(key, method, "catalog")
                # The same words whether the catalog exists or not.
                raise PermissionDenied(f"key {key.id} may not use catalog {catalog or '(default)'!r}")
            self._limit(key)
            if scope is not Scope.SEARCH:
                audit.info("key=%s rpc=%s catalog=%r", key.id, method.rsplit("/", 1)[-1], catalog)
            return await inner(request, context)  # type: ignore[arg-type]

        return with_unary(handler, authorised)

    def _authenticate(self, metadata: Any, peer: str, method: str) -> ApiKey:
        now = self._clock()
        values = [str(m.value) for m in metadata if m.key == "authorization"]
        if not values:
            self._failed(peer, method, "no authorization metadata", now)
            raise Unauthenticated("this API needs an API key: send 'authorization: Bearer <key>' metadata")
        try:
            if len(values) > 1:
                raise MalformedKey("send one authorization metadata entry, not several")
            if len(values[0]) > MAX_AUTHORIZATION_CHARS:
                raise MalformedKey("the authorization metadata is too long")
            key, why = self._store.ring(now).find(bearer_token(values[0]))
        except MalformedKey as err:
            self._failed(peer, method, str(err), now)
            raise Unauthenticated(str(err)) from None
        if key is None:
            self._failed(peer, method, why, now)
            raise Unauthenticated("the API key is not valid (unknown or revoked)")
        if self._seen.get(key.id, -1.0) < self._store.loaded_at:
            self._seen[key.id] = now
            audit.info("key=%s (%s) in use", key.id, key.name or "unnamed")
        if self._on_use is not None and now - self._noted.get(key.id, -NOTE_EVERY_SECONDS) >= NOTE_EVERY_SECONDS:
            self._noted[key.id] = now
            self._on_use(key.id, time.time())
        return key

    def _failed(self, peer: str, method: str, why: str, now: float) -> None:
        """Count a bad credential against its peer; past the allowance, throttle the peer."""
        audit.warning("refused peer=%s rpc=%s: %s", peer, method.rsplit("/", 1)[-1], why)
        per_second = self._options.failures_per_minute / 60.0
        wait = self._failures.take(_host(peer), per_second, self._options.failures_per_minute, now)
        if wait > 0:
            raise ResourceExhausted(
                f"too many failed authentications from this client; retry in {wait:.0f} s", retry_after_seconds=wait
            )

    def _refuse(self, key: ApiKey, method: str, what: str) -> None:
        audit.warning("key=%s refused rpc=%s: outside its %s", key.id, method.rsplit("/", 1)[-1], what)

    def _limit(self, key: ApiKey) -> None:
        rate = self._options.rate_per_second if key.rate_per_second is None else key.rate_per_second
        burst = max(1.0, rate * self._options.burst_seconds)
        wait = self._rates.take(key.id, rate, burst, self._clock())
        if wait > 0:
            raise ResourceExhausted(
                f"key {key.id} is over its rate of {rate:g} requests/s; retry in {wait * 1000:.0f} ms",
                retry_after_seconds=wait,
            )


def _host(peer: str) -> str:
    """'ipv4:10.0.0.7:51234' -> 'ipv4:10.0.0.7': a client's connections share one allowance."""
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer
