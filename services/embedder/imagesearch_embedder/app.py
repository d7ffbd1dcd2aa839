"""Wires the embedder: Triton client and decode thread pool built at connect(), closed at close()."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common.errors import Unavailable
from imagesearch.common.server import ServerOptions, ServiceServer
from imagesearch.v1 import embedder_pb2_grpc
from imagesearch_embedder.core import EmbedderCore
from imagesearch_embedder.imaging import check_pillow_is_strict
from imagesearch_embedder.servicer import EmbedderServicer
from imagesearch_embedder.settings import EmbedderSettings
from imagesearch_embedder.triton import TritonEmbedder

log = logging.getLogger(__name__)


class EmbedderBackend:
    """The `Backend` of ServiceServer: NOT_SERVING until Triton serves a model that fits our contract."""

    service_names = ("imagesearch.v1.EmbedderService",)

    def __init__(self, settings: EmbedderSettings, tracer_provider: TracerProvider) -> None:
        self._settings = settings
        self._provider = tracer_provider
        self._triton: TritonEmbedder | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._core: EmbedderCore | None = None

    def register(self, server: grpc.aio.Server) -> None:
        embedder_pb2_grpc.add_EmbedderServiceServicer_to_server(EmbedderServicer(self.core), server)

    def core(self) -> EmbedderCore:
        if self._core is None:
            raise Unavailable(
                f"embedder is starting: waiting for model {self._settings.triton_model!r} on triton at {self._settings.triton_url}"
            )
        return self._core

    async def connect(self) -> None:
        s = self._settings
        check_pillow_is_strict()  # a process-wide Pillow misconfiguration must keep us NOT_SERVING
        if self._triton is None:
            self._triton = TritonEmbedder(
                s.triton_url,
                s.triton_model,
                s.triton_model_version,
                s.triton_timeout_seconds,
                self._provider,
                image_size=s.image_size,
                localize_size=s.localize_size,
            )
        await self._triton.connect()  # raises (and closes its client) on an unready or non-conformant model
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=s.decode_workers, thread_name_prefix="embedder-decode")
        self._core = EmbedderCore(self._triton, s, self._executor, self._provider.get_tracer("imagesearch_embedder"))
        model = self._triton.model
        log.info(
            "embedder: serving %s version %s (%d-d), %d decode threads, resize mode %s",
            model.name,
            model.version,
            model.dimension,
            s.decode_workers,
            s.resize_mode,
        )

    async def check(self) -> None:
        if self._triton is None or self._core is None or self._executor is None:
            raise Unavailable("embedder is not connected")
        await self._triton.check()
        if self._core.model != self._triton.model or self._core.input_size != self._triton.input_size:
            # Triton rolled to another version: preprocess for its input size from now on.
            self._core = EmbedderCore(
                self._triton, self._settings, self._executor, self._provider.get_tracer("imagesearch_embedder")
            )

    async def close(self) -> None:
        self._core = None
        if self._triton is not None:
            await self._triton.close()
            self._triton = None
        if self._executor is not None:
            # In-flight calls were drained by the server's grace period; don't block the loop on stragglers.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def build_server(settings: EmbedderSettings, tracer_provider: TracerProvider) -> ServiceServer:
    return ServiceServer(
        "embedder",
        EmbedderBackend(settings, tracer_provider),
        ServerOptions(host=settings.host, port=settings.port, max_message_bytes=settings.max_message_bytes),
        tracer_provider,
    )
