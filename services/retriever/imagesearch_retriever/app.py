"""Wires the retriever: the Milvus store, the core and the servicer.

Built in __init__ (no I/O); the Milvus client connects in connect() and closes in close(). Until
connect() succeeds every call fails UNAVAILABLE, from the store itself.
"""

from __future__ import annotations

import logging
import time

import grpc
from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common import service
from imagesearch.common.config import options_from
from imagesearch.common.errors import DomainError
from imagesearch.common.metrics import ServiceMetrics
from imagesearch.v1 import retriever_pb2, retriever_pb2_grpc
from imagesearch_retriever.core import RetrieverCore
from imagesearch_retriever.horizon import Horizons
from imagesearch_retriever.milvus.store import MilvusOptions, MilvusStore
from imagesearch_retriever.servicer import RetrieverServicer
from imagesearch_retriever.settings import RetrieverSettings

log = logging.getLogger(__name__)
SERVICE_NAME = retriever_pb2.DESCRIPTOR.services_by_name["RetrieverService"].full_name


class RetrieverBackend:
    service_names = (SERVICE_NAME,)

    def __init__(self, settings: RetrieverSettings, tracer_provider: TracerProvider) -> None:
        horizons = None
        if settings.redis_url:  # no I/O here: redis-py connects on first use
            horizons = Horizons(
                settings.redis_url, settings.redis_namespace, settings.redis_timeout_seconds, tracer_provider
            )
        self.store = MilvusStore(options_from(settings, MilvusOptions), tracer_provider, horizons=horizons)
        self.core = RetrieverCore(self.store, max_top_k=settings.max_top_k)
        self._sizes: dict[tuple[str, ...], float] = {}
        self._sizes_due = 0.0
        self._count_seconds = settings.catalog_count_seconds

    def register_metrics(self, metrics: ServiceMetrics) -> None:
        metrics.watch_breaker("milvus", self.store.breaker)
        self.store.calls = metrics.dependency("milvus")
        metrics.labelled_gauges(
            "imagesearch_catalog_products",
            "Products per catalog and model, as counted at most RETRIEVER_CATALOG_COUNT_SECONDS ago "
            "(each replica reports the catalogs it has served since start: take the max across replicas)",
            ("catalog", "model"),
            lambda: dict(self._sizes),
        )
        if self.store.horizons is not None:
            metrics.watch_breaker("redis", self.store.horizons.breaker)

    def register(self, server: grpc.aio.Server) -> None:
        retriever_pb2_grpc.add_RetrieverServiceServicer_to_server(RetrieverServicer(self.core), server)

    async def connect(self) -> None:
        await self.store.connect()  # builds the MilvusClient and lists collections

    async def check(self) -> None:
        await self.store.check()
        if time.monotonic() >= self._sizes_due:  # counting is a query per catalog: not at every check
            self._sizes_due = time.monotonic() + self._count_seconds
            try:
                self._sizes = await self.store.catalog_sizes()
            except DomainError as err:
                log.info("catalog sizes not counted this time: %s", err.message)

    async def close(self) -> None:
        await self.store.close()


SERVICE = service.Service(
    "retriever",
    "The internal imagesearch RetrieverService: vector search with filters, one hit per product, "
    "and catalog storage on Milvus (one collection per catalog and model).",
    RetrieverSettings,
    RetrieverBackend,
)
build_server = SERVICE.server
