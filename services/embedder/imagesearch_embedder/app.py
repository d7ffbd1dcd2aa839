"""Wires the embedder: the Triton adapter, the decode thread pool, the core and the servicer.

Built in __init__ (no I/O, no threads yet); the Triton client connects in connect() and closes in
close(). Until connect() succeeds every call fails UNAVAILABLE, from the adapter itself.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common import service
from imagesearch.common.config import options_from
from imagesearch.common.metrics import ServiceMetrics
from imagesearch.common.types import ImageErrorReason
from imagesearch.imaging.decode import ResizeMode, check_pillow_is_strict
from imagesearch.imaging.sniff import Limits
from imagesearch.v1 import embedder_pb2_grpc
from imagesearch_embedder.core import EmbedderCore, EmbedOptions
from imagesearch_embedder.servicer import EmbedderServicer
from imagesearch_embedder.settings import EmbedderSettings
from imagesearch_embedder.triton import TritonEmbedder, TritonOptions

log = logging.getLogger(__name__)


def options(settings: EmbedderSettings) -> EmbedOptions:
    return EmbedOptions(
        max_batch_images=settings.max_batch_images,
        limits=Limits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_pixels),
        resize_mode=ResizeMode(settings.resize_mode),
        image_size=settings.image_size,
        localize_size=settings.localize_size,
        decode_memory_bytes=settings.decode_memory_bytes,
    )


class EmbedderBackend:
    """The `Backend` of ServiceServer: NOT_SERVING until Triton serves a model that fits our contract."""

    service_names = ("imagesearch.v1.EmbedderService",)

    def __init__(self, settings: EmbedderSettings, tracer_provider: TracerProvider) -> None:
        s = settings
        self._settings = settings
        self.triton = TritonEmbedder(options_from(s, TritonOptions), tracer_provider)
        self._executor = ThreadPoolExecutor(max_workers=s.decode_workers, thread_name_prefix="embedder-decode")
        self.core = EmbedderCore(
            self.triton, options(s), self._executor, tracer_provider.get_tracer("imagesearch_embedder")
        )

    def register_metrics(self, metrics: ServiceMetrics) -> None:
        metrics.watch_breaker("triton", self.triton.breaker)
        self.triton.calls = metrics.dependency("triton")
        core, triton = self.core, self.triton
        metrics.gauge(
            "imagesearch_decode_memory_bytes",
            "Decoded pixels held now by all requests (EMBEDDER_DECODE_MEMORY_BYTES bounds it)",
            lambda: float(core.decode_memory.used),
        )
        metrics.gauge(
            "imagesearch_decode_in_flight",
            "Images being decoded now (EMBEDDER_DECODE_WORKERS threads work on them)",
            lambda: float(core.decodes_in_flight),
        )
        metrics.counters(
            "imagesearch_image_failures",
            "Images refused, by reason (imagesearch.v1.ImageErrorReason, lower case)",
            "reason",
            lambda: {reason.name.lower(): float(core.rejected[reason.name.lower()]) for reason in ImageErrorReason},
        )
        metrics.labelled_gauges(
            "imagesearch_model_info",
            "1 for the model (and its version) this embedder serves now; none until Triton serves one",
            ("model", "version"),
            lambda: {(m.name, m.version): 1.0} if (m := triton.served_or_none) is not None else {},
        )

    def register(self, server: grpc.aio.Server) -> None:
        embedder_pb2_grpc.add_EmbedderServiceServicer_to_server(EmbedderServicer(self.core), server)

    async def connect(self) -> None:
        check_pillow_is_strict()  # a process-wide Pillow misconfiguration must keep us NOT_SERVING
        await self.triton.connect()  # raises (and closes its client) on an unready or non-conformant model
        served, s = self.triton.served, self._settings
        log.info(
            "embedder: serving %s version %s (%d-d), %d decode threads, resize mode %s",
            served.name,
            served.version,
            served.dimension,
            s.decode_workers,
            s.resize_mode,
        )

    async def check(self) -> None:
        # Follows a rollout: the adapter adopts the version Triton serves now, and the next request uses it.
        await self.triton.check()

    async def close(self) -> None:
        await self.triton.close()
        # In-flight calls were drained by the server's grace period; don't block the loop on stragglers.
        self._executor.shutdown(wait=False, cancel_futures=True)


SERVICE = service.Service(
    "embedder",
    "The imagesearch embedder: EmbedderService validates and decodes uploaded images (JPEG, PNG, WebP) "
    "and embeds them with a model served by Triton Inference Server.",
    EmbedderSettings,
    EmbedderBackend,
)
build_server = SERVICE.server
