"""gRPC adapters for the gateway's downstream services (the `Embedder` and `Retriever` ports).

One long-lived channel each, opened in `open()` (inside the event loop) and closed in `close()`;
until then every call fails UNAVAILABLE. Channels send keepalive pings (imagesearch.common.
keepalive) and spread calls over every pod the address names, retrying the read-only calls on
another pod when one has gone (imagesearch.common.balancing). Each call's deadline is its timeout
cut to what our caller has left (imagesearch.common.deadline); a failed call becomes the
DomainError our caller should see (`imagesearch.common.interceptors.from_downstream`), and an
outage opens the service's breaker, so later calls fail fast until a health probe or a trial call
finds it back (imagesearch.common.breaker).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common import balancing, convert, deadline, keepalive
from imagesearch.common.breaker import PROBE_TIMEOUT_SECONDS, Breaker
from imagesearch.common.errors import DomainError, FailedPrecondition, Unavailable
from imagesearch.common.interceptors import from_downstream
from imagesearch.common.metrics import MetricsClientInterceptor, ServiceMetrics
from imagesearch.common.telemetry import client_interceptors
from imagesearch.common.tls import ClientTls
from imagesearch.common.types import Floats, Hit, ModelId, ProductRecord, Region
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.v1 import embedder_pb2, embedder_pb2_grpc, retriever_pb2, retriever_pb2_grpc
from imagesearch_gateway.ports import EmbeddedImage, Embeddings, ImageFault, ImageVector, Lookup, ObjectVector

Reply = TypeVar("Reply")


class _Client:
    """A channel to one service, its health check, and calls with a deadline and mapped errors."""

    name = ""
    # (service, method) of the calls that change nothing, so are safe to retry on another pod.
    retry_methods: tuple[tuple[str, str], ...] = ()

    def __init__(
        self,
        address: str,
        provider: TracerProvider,
        timeout: float,
        max_message_bytes: int,
        tls: ClientTls | None = None,
    ) -> None:
        self._address, self._provider, self._timeout, self._tls = address, provider, timeout, tls
        self._max_message_bytes = max_message_bytes
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self.breaker = Breaker(f"{self.name} at {address}")
        self._measured: list[grpc.aio.ClientInterceptor] = []

    def instrument(self, metrics: ServiceMetrics) -> None:
        """Time every call into the service's rpc_client_duration_seconds (before open())."""
        self._measured = [cast(grpc.aio.ClientInterceptor, MetricsClientInterceptor(metrics))]

    def open(self) -> None:
        if self._channel is None:
            interceptors = [*client_interceptors(self._provider), *self._measured]  # tracing outermost
            options = [
                ("grpc.max_receive_message_length", self._max_message_bytes),
                ("grpc.max_send_message_length", self._max_message_bytes),
                *keepalive.client_options(),
                *balancing.client_options(self.retry_methods, self._max_message_bytes),
            ]
            if self._tls is None:
                self._channel = grpc.aio.insecure_channel(self._address, interceptors=interceptors, options=options)
            else:
                self._channel = grpc.aio.secure_channel(
                    self._address, self._tls.credentials(), interceptors=interceptors, options=options
                )
            self._stub = self._make_stub(self._channel)

    def _make_stub(self, channel: grpc.aio.Channel) -> Any:
        raise NotImplementedError

    @property
    def channel(self) -> grpc.aio.Channel:
        """The open channel; UNAVAILABLE before open()."""
        if self._channel is None:
            raise Unavailable(f"gateway is starting: not connected to the {self.name} at {self._address} yet")
        return self._channel

    @property
    def stub(self) -> Any:
        self.channel  # noqa: B018 - raises UNAVAILABLE before open()
        return self._stub

    def check_available(self) -> None:
        """Unavailable now while the breaker knows the service is down: before any work that needs it."""
        self.breaker.check()

    async def check(self) -> None:
        """Probe the service's health; the breaker follows the answer (it is the trial call when open)."""
        try:
            reply = await health_pb2_grpc.HealthStub(self.channel).Check(
                health_pb2.HealthCheckRequest(), timeout=min(self._timeout, PROBE_TIMEOUT_SECONDS)
            )
        except grpc.aio.AioRpcError as err:
            self.breaker.failed(f"{self.name} is unreachable: {err.code().name}")
            raise Unavailable(f"{self.name} is unreachable: {err.code().name}") from err
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            # It answers, so it fails its own calls fast, naming what it lacks (Triton, Milvus):
            # more precise than anything said here. That alone opens nothing; an open breaker (its
            # reason names the cause) stays open until the service is SERVING again.
            raise Unavailable(f"{self.name} is not serving")
        self.breaker.succeeded()

    async def _call(self, method: Callable[..., Awaitable[Reply]], request: Any) -> Reply:
        self.breaker.check()
        timeout = deadline.bounded(self._timeout, self.name)
        try:
            reply = await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            mapped = from_downstream(self.name, err)
            self.breaker.record(mapped, cut_by_caller=timeout < self._timeout)
            raise mapped from err
        self.breaker.succeeded()
        return reply

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close(grace=None)


class EmbedderClient(_Client):
    name = "embedder"
    retry_methods = (("imagesearch.v1.EmbedderService", "Embed"), ("imagesearch.v1.EmbedderService", "GetModelInfo"))

    def _make_stub(self, channel: grpc.aio.Channel) -> embedder_pb2_grpc.EmbedderServiceStub:
        return embedder_pb2_grpc.EmbedderServiceStub(channel)

    async def model_info(self) -> tuple[ModelId, ScoreCalibration | None]:
        """The model the embedder serves, and its own same-product calibration (None: it carries none)."""
        reply = await self._call(self.stub.GetModelInfo, embedder_pb2.GetModelInfoRequest())
        return _model(reply)

    async def embed(
        self,
        images: Sequence[tuple[bytes, Region | None]],
        *,
        localize: bool = False,
        trim_to_object: bool = False,
        detect_objects: bool = False,
        localize_in_region: bool | Sequence[bool] = False,
    ) -> Embeddings:
        request = embedder_pb2.EmbedRequest()
        inside = [localize_in_region] * len(images) if isinstance(localize_in_region, bool) else localize_in_region
        if len(inside) != len(images):
            raise ValueError(f"localize_in_region names {len(inside)} images of {len(images)}")
        first_with: dict[bytes, int] = {}  # content -> the first image sending it
        for index, ((content, region), look_inside) in enumerate(zip(images, inside)):
            image = request.images.add(
                region=convert.region_to_pb(region),
                localize=localize,
                trim_to_object=trim_to_object,
                detect_objects=detect_objects,
                localize_in_region=look_inside,
            )
            # Regions of one photo (the zoom tiles) send it once; the embedder decodes it once.
            if (source := first_with.setdefault(content, index)) != index:
                image.same_content_as = source
            else:
                image.content = content
        reply = await self._call(self.stub.Embed, request)
        model, calibration = _model(reply.model)
        out: list[EmbeddedImage] = []
        for result in reply.results:
            if not result.HasField("embedding"):
                out.append(EmbeddedImage(ImageFault(*convert.image_error_from_pb(result.error))))
                continue
            vector = _vector(result.embedding.values, model)
            whole = _vector(result.whole_image.values, model) if result.HasField("whole_image") else None
            box = _box(result.box) if result.HasField("box") else None
            objects = tuple(
                ObjectVector(_box(found.box), found.salience, _vector(found.embedding.values, model))
                for found in result.objects
            )
            popout = _box(result.popout_box) if result.HasField("popout_box") else None
            out.append(EmbeddedImage(vector, whole, box, objects, popout))
        if len(out) != len(images):
            raise DomainError(f"embedder answered {len(out)} results for {len(images)} images")
        return Embeddings(out, model, calibration)


def _model(info: Any) -> tuple[ModelId, ScoreCalibration | None]:
    model = convert.model_from_pb(info)
    try:
        return model, convert.calibration_from_pb(info)
    except ValueError as err:
        raise FailedPrecondition(
            f"embedder reports an unusable same-product calibration for model {model.name} v{model.version}: {err}"
        ) from None


def _box(msg: Any) -> Region:
    """A box the embedder found; clamped, since it comes from arithmetic on a coarse grid."""
    x0, y0, x1, y1 = (min(1.0, max(0.0, v)) for v in (msg.x_min, msg.y_min, msg.x_max, msg.y_max))
    return Region(x0, y0, max(x1, x0), max(y1, y0))


def _vector(values: Sequence[float], model: ModelId) -> Floats:
    vector = np.asarray(values, dtype=np.float32)
    if vector.shape != (model.dimension,):
        raise DomainError(
            f"embedder returned a {vector.shape[0]}-d vector labelled {model.name} v{model.version} ({model.dimension}-d)"
        )
    return vector


class RetrieverClient(_Client):
    name = "retriever"
    # Not the writes: one that failed UNAVAILABLE may have been applied; the caller decides.
    retry_methods = (("imagesearch.v1.RetrieverService", "Search"), ("imagesearch.v1.RetrieverService", "Get"))

    def _make_stub(self, channel: grpc.aio.Channel) -> retriever_pb2_grpc.RetrieverServiceStub:
        return retriever_pb2_grpc.RetrieverServiceStub(channel)

    async def search(self, model: ModelId, lookup: Lookup) -> list[Hit]:
        request = retriever_pb2.VectorSearchRequest(
            model=convert.model_to_pb(model),
            catalog=lookup.catalog,
            top_k=lookup.top_k,
            filter=convert.filter_to_pb(lookup.filter_spec),
            min_score=lookup.min_score,
        )
        if lookup.vector is not None:
            request.vector.values.extend(lookup.vector.tolist())
        elif lookup.any_of:
            for vector in lookup.any_of:
                request.any_of.vectors.add().values.extend(vector.tolist())
        else:
            request.product_id = lookup.product_id or ""
        reply = await self._call(self.stub.Search, request)
        return [convert.hit_from_pb(hit) for hit in reply.hits]

    async def upsert(
        self, model: ModelId, products: Sequence[tuple[ProductRecord, list[ImageVector]]], catalog: str
    ) -> None:
        request = retriever_pb2.UpsertRequest(model=convert.model_to_pb(model), catalog=catalog)
        for record, images in products:
            item = request.products.add(product=convert.product_to_pb(record))
            for uri, vector in images:
                item.images.add(uri=uri).vector.values.extend(vector.tolist())
        await self._call(self.stub.Upsert, request)

    async def delete(self, model: ModelId, product_ids: Sequence[str], catalog: str) -> tuple[list[str], list[str]]:
        request = retriever_pb2.DeleteRequest(
            model=convert.model_to_pb(model), product_ids=list(product_ids), catalog=catalog
        )
        reply = await self._call(self.stub.Delete, request)
        return list(reply.deleted), list(reply.not_found)

    async def get(self, model: ModelId, product_id: str, catalog: str) -> ProductRecord:
        request = retriever_pb2.GetRequest(model=convert.model_to_pb(model), product_id=product_id, catalog=catalog)
        return convert.product_from_pb(await self._call(self.stub.Get, request))

    async def drop_catalog(self, model: ModelId, catalog: str) -> bool:
        request = retriever_pb2.DropCatalogRequest(model=convert.model_to_pb(model), catalog=catalog)
        reply: retriever_pb2.DropCatalogResponse = await self._call(self.stub.DropCatalog, request)
        return reply.existed
