"""Wires the gateway: the embedder/retriever clients and the cache, the model tracker, the cores, the servicer.

Built in __init__ (no I/O); the channels and the Redis client open in connect() and close in
close(). Until connect() has named the embedder's model every call fails UNAVAILABLE.
"""

from __future__ import annotations

import grpc
from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common import service
from imagesearch.common.server import ServiceServer
from imagesearch.v1 import search_pb2_grpc
from imagesearch_gateway.cache import ResultCache
from imagesearch_gateway.catalog import CatalogCore, CatalogOptions
from imagesearch_gateway.clients import EmbedderClient, RetrieverClient
from imagesearch_gateway.models import ModelTracker
from imagesearch_gateway.search import SearchCore, SearchOptions
from imagesearch_gateway.servicer import SearchServicer
from imagesearch_gateway.settings import GatewaySettings


def search_options(s: GatewaySettings) -> SearchOptions:
    return SearchOptions(
        localize_queries=s.localize_queries,
        category_boost=s.category_boost,
        rerank_depth=s.rerank_depth,
        whole_photo_slots=s.whole_photo_slots,
        whole_photo_below=s.whole_photo_below,
    )


def catalog_options(s: GatewaySettings) -> CatalogOptions:
    return CatalogOptions(max_images_per_product=s.max_images_per_product, index_object_crops=s.index_object_crops)


class GatewayBackend:
    service_names = ("imagesearch.v1.SearchService",)

    def __init__(self, settings: GatewaySettings, tracer_provider: TracerProvider) -> None:
        s = settings
        self.embedder = EmbedderClient(
            s.embedder_addr, tracer_provider, s.embed_timeout_seconds, s.max_message_bytes * 2
        )
        self.retriever = RetrieverClient(
            s.retriever_addr, tracer_provider, s.retrieve_timeout_seconds, s.max_message_bytes * 4
        )
        self.cache = ResultCache(
            s.redis_url,
            s.cache_ttl_seconds,
            s.cache_timeout_seconds,
            s.cache_retry_seconds,
            tracer_provider.get_tracer("imagesearch.gateway.cache"),
        )
        self.models = ModelTracker(s.calibration)
        self.search = SearchCore(self.embedder, self.retriever, self.cache, self.models, search_options(s))
        self.catalog = CatalogCore(self.embedder, self.retriever, self.cache, self.models, catalog_options(s))

    def register(self, server: grpc.aio.Server) -> None:
        search_pb2_grpc.add_SearchServiceServicer_to_server(SearchServicer(self.search, self.catalog), server)

    async def connect(self) -> None:
        self.embedder.open()
        self.retriever.open()
        await self.cache.connect()
        await self.check()

    async def check(self) -> None:
        await self.embedder.check()
        await self.retriever.check()
        # A redeployed embedder may serve another model: follow it (and its calibration) so vectors never mix.
        self.models.observe(*await self.embedder.model_info())

    async def close(self) -> None:
        for closable in (self.embedder, self.retriever, self.cache):
            await closable.close()


def build_server(settings: GatewaySettings, tracer_provider: TracerProvider) -> ServiceServer:
    return service.build_server("gateway", GatewayBackend, settings, tracer_provider)
