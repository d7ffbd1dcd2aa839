"""Wires the gateway: clients and cache built at connect(), closed at close()."""

from __future__ import annotations

import logging

import grpc
from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common.errors import Unavailable
from imagesearch.common.server import ServerOptions, ServiceServer
from imagesearch.common.types import ModelId
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.v1 import search_pb2_grpc
from imagesearch_gateway.cache import ResultCache
from imagesearch_gateway.clients import EmbedderClient, RetrieverClient
from imagesearch_gateway.core import CatalogCore, SearchCore
from imagesearch_gateway.servicer import SearchServicer
from imagesearch_gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


class GatewayBackend:
    service_names = ("imagesearch.v1.SearchService",)

    def __init__(self, settings: GatewaySettings, tracer_provider: TracerProvider) -> None:
        self._settings = settings
        self._provider = tracer_provider
        self._cores: tuple[SearchCore, CatalogCore] | None = None
        self._embedder: EmbedderClient | None = None
        self._retriever: RetrieverClient | None = None
        self.cache: ResultCache | None = None
        self._model: ModelId | None = None
        # The served model version's own calibration; None when it carries none.
        self._model_calibration: ScoreCalibration | None = None

    @property
    def model(self) -> ModelId:
        assert self._model is not None, "gateway used before connect()"
        return self._model

    @property
    def calibration(self) -> ScoreCalibration:
        """How scores of `model` become same-product probabilities: its own fit, else SAME_PRODUCT_CALIBRATION."""
        if self._model_calibration is not None:
            return self._model_calibration
        return self._settings.calibration

    async def _follow_model(self) -> None:
        """Adopt the embedder's model and, with it, its calibration: both belong to one version."""
        assert self._embedder is not None
        model, calibration = await self._embedder.model_info()
        if (model, calibration) != (self._model, self._model_calibration):
            fallback = self._settings.calibration
            log.info(
                "gateway: serving model %s v%s (%d-d), same-product calibration %s",
                model.name,
                model.version,
                model.dimension,
                f"{calibration.slope:g},{calibration.intercept:g} (the model's)"
                if calibration is not None
                else f"{fallback.slope:g},{fallback.intercept:g} (SAME_PRODUCT_CALIBRATION: the model carries none)",
            )
        # One assignment, no await in between: a call never sees one version's model with another's calibration.
        self._model, self._model_calibration = model, calibration

    def register(self, server: grpc.aio.Server) -> None:
        search_pb2_grpc.add_SearchServiceServicer_to_server(SearchServicer(self.cores), server)

    async def connect(self) -> None:
        s = self._settings
        if self._embedder is None:
            self._embedder = EmbedderClient(
                s.embedder_addr, self._provider, s.embed_timeout_seconds, s.max_message_bytes * 2
            )
            self._retriever = RetrieverClient(
                s.retriever_addr, self._provider, s.retrieve_timeout_seconds, s.max_message_bytes * 4
            )
            self.cache = ResultCache(
                s.redis_url,
                s.cache_ttl_seconds,
                s.cache_timeout_seconds,
                s.cache_retry_seconds,
                self._provider.get_tracer("imagesearch.gateway.cache"),
            )
            await self.cache.connect()
        assert self._retriever is not None and self.cache is not None
        await self._embedder.check()
        await self._retriever.check()
        await self._follow_model()
        self._cores = (
            SearchCore(
                self._embedder,
                self._retriever,
                self.cache,
                self,
                s.default_top_k,
                s.max_top_k,
                s.localize_queries,
                s.category_boost,
                s.rerank_depth,
                s.whole_photo_slots,
                s.whole_photo_below,
            ),
            CatalogCore(
                self._embedder, self._retriever, self.cache, self, s.max_images_per_product, s.index_object_crops
            ),
        )

    def cores(self) -> tuple[SearchCore, CatalogCore]:
        if self._cores is None:
            raise Unavailable("gateway is starting: waiting for the embedder and the retriever")
        return self._cores

    async def check(self) -> None:
        assert self._embedder is not None and self._retriever is not None
        await self._embedder.check()
        await self._retriever.check()
        # A redeployed embedder may serve another model: follow it (and its calibration) so vectors never mix.
        await self._follow_model()

    async def close(self) -> None:
        for closable in (self._embedder, self._retriever, self.cache):
            if closable is not None:
                await closable.close()


def build_server(settings: GatewaySettings, tracer_provider: TracerProvider) -> ServiceServer:
    options = ServerOptions(host=settings.host, port=settings.port, max_message_bytes=settings.max_message_bytes)
    return ServiceServer("gateway", GatewayBackend(settings, tracer_provider), options, tracer_provider)
