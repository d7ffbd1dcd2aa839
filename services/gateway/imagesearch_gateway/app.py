"""Wires the gateway: the embedder/retriever clients and the cache, the model tracker, the cores, the servicer.

Built in __init__ (no I/O); the channels and the Redis client open in connect() and close in
close(). Until connect() has named the embedder's model every call fails UNAVAILABLE.
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common import service
from imagesearch.common.config import options_from
from imagesearch.common.errors import DomainError
from imagesearch.common.metrics import ServiceMetrics
from imagesearch.common.types import ImageErrorReason
from imagesearch.v1 import search_pb2_grpc
from imagesearch_gateway.auth import AuthInterceptor, AuthOptions
from imagesearch_gateway.cache import CacheOptions, ResultCache
from imagesearch_gateway.catalog import CatalogCore, CatalogOptions
from imagesearch_gateway.clients import EmbedderClient, RetrieverClient
from imagesearch_gateway.models import ModelTracker
from imagesearch_gateway.ports import Ports
from imagesearch_gateway.search import SearchCore, SearchOptions
from imagesearch_gateway.servicer import SearchServicer
from imagesearch_gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


class GatewayBackend:
    service_names = ("imagesearch.v1.SearchService",)

    def __init__(self, settings: GatewaySettings, tracer_provider: TracerProvider) -> None:
        s = settings
        self.embedder = EmbedderClient(
            s.embedder_addr, tracer_provider, s.embed_timeout_seconds, s.max_message_bytes * 2, s.internal_tls
        )
        self.retriever = RetrieverClient(
            s.retriever_addr, tracer_provider, s.retrieve_timeout_seconds, s.max_message_bytes * 4, s.internal_tls
        )
        self.cache = ResultCache(options_from(s, CacheOptions), tracer_provider.get_tracer("imagesearch.gateway.cache"))
        self.models = ModelTracker(s.calibration)
        ports = Ports(self.embedder, self.retriever, self.cache, self.models)
        self.search = SearchCore(ports, options_from(s, SearchOptions))
        self.catalog = CatalogCore(ports, options_from(s, CatalogOptions))
        self._embedder_down = False
        self.auth: AuthInterceptor | None = None
        if s.auth:
            self.auth = AuthInterceptor(
                AuthOptions(
                    keys_file=Path(s.api_keys_file),
                    reload_seconds=s.api_keys_reload_seconds,
                    rate_per_second=s.key_rate_per_second,
                    failures_per_minute=s.auth_failures_per_minute,
                ),
                on_use=self.cache.note_key_use,
            )
        else:
            log.warning("GATEWAY_AUTH=false: the public API is open to anyone who can reach this port")

    @property
    def interceptors(self) -> tuple[grpc.aio.ServerInterceptor, ...]:  # type: ignore[type-arg]
        return () if self.auth is None else (self.auth,)

    def register_metrics(self, metrics: ServiceMetrics) -> None:
        self.embedder.instrument(metrics)
        self.retriever.instrument(metrics)
        self.cache.calls = metrics.dependency("redis")
        ingested = self.catalog.ingested
        metrics.counters(
            "imagesearch_ingest_products",
            "Products sent to UpsertProducts, by outcome (failed: refused, an image rejected, or the write failed)",
            "outcome",
            lambda: {"ok": ingested.ok, "failed": ingested.failed},
        )
        metrics.counters(
            "imagesearch_ingest_image_failures",
            "Images of UpsertProducts refused, by reason (imagesearch.v1.ImageErrorReason)",
            "reason",
            lambda: {r.name.lower(): float(ingested.image_failures[r.name.lower()]) for r in ImageErrorReason},
        )
        metrics.watch_breaker("embedder", self.embedder.breaker)
        metrics.watch_breaker("retriever", self.retriever.breaker)
        stats = self.cache.stats
        metrics.counters(
            "imagesearch_cache_lookups",
            "Result-cache lookups by outcome (bypassed: not read; corrupt: unreadable values, counted as misses)",
            "outcome",
            lambda: {"hit": stats.hits, "miss": stats.misses, "bypassed": stats.bypassed, "corrupt": stats.corrupt},
        )
        metrics.counters(
            "imagesearch_cache_errors",
            "Redis commands that failed or timed out",
            "kind",
            lambda: {"redis": stats.errors},
        )

    def register(self, server: grpc.aio.Server) -> None:
        search_pb2_grpc.add_SearchServiceServicer_to_server(SearchServicer(self.search, self.catalog), server)

    async def connect(self) -> None:
        if self.auth is not None:
            self.auth.load()  # a missing or broken key file keeps the gateway NOT_SERVING, saying why
        self.embedder.open()
        self.retriever.open()
        await self.cache.connect()
        await self.retriever.check()
        await self._follow_the_model()  # needed once: every call names the model

    async def check(self) -> None:
        """SERVING while the retriever answers: lookups, deletes and cached answers need nothing else.
        An embedder outage only fails what needs it (searches by photo, upserts), fast, through its
        breaker; health staying up keeps the rest served."""
        await self.retriever.check()
        try:
            await self._follow_the_model()
        except DomainError as err:
            if not self._embedder_down:
                log.warning("embedder unavailable (%s): searches by photo and upserts fail fast meanwhile", err.message)
            self._embedder_down = True
            return
        if self._embedder_down:
            log.info("embedder back")
        self._embedder_down = False

    async def _follow_the_model(self) -> None:
        await self.embedder.check()
        # A redeployed embedder may serve another model: follow it (and its calibration) so vectors never mix.
        self.models.observe(*await self.embedder.model_info())

    async def close(self) -> None:
        for closable in (self.embedder, self.retriever, self.cache):
            await closable.close()


SERVICE = service.Service(
    "gateway",
    "The public imagesearch gRPC gateway: SearchService (search by photo, catalog ingest), with a Redis result cache.",
    GatewaySettings,
    GatewayBackend,
)
build_server = SERVICE.server
