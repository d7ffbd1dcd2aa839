"""Adapters for the gateway's downstream services, over long-lived gRPC channels.

Each call has a deadline; a failed call becomes the DomainError our caller
should see (see `imagesearch.common.errors.from_downstream`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common import convert
from imagesearch.common.errors import FailedPrecondition, Unavailable, from_downstream
from imagesearch.common.telemetry import client_interceptors
from imagesearch.common.types import FilterSpec, Hit, ModelId, ProductRecord, Region
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    retriever_pb2,
    retriever_pb2_grpc,
)


@dataclass(frozen=True)
class ImageFault:
    """Why the embedder rejected one image (reason is an ImageErrorReason value)."""

    reason: int
    message: str

    @property
    def reason_name(self) -> str:
        return common_pb2.ImageErrorReason.Name(self.reason)


def _channel(address: str, provider: TracerProvider, max_message_bytes: int) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        address,
        interceptors=client_interceptors(provider),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )


async def _check_serving(channel: grpc.aio.Channel, name: str, timeout: float) -> None:
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.aio.AioRpcError as err:
        raise Unavailable(f"{name} is unreachable: {err.code().name}") from err
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise Unavailable(f"{name} is not serving")


class EmbedderClient:
    name = "embedder"

    def __init__(self, address: str, provider: TracerProvider, timeout: float, max_message_bytes: int) -> None:
        self._channel = _channel(address, provider, max_message_bytes)
        self._stub = embedder_pb2_grpc.EmbedderServiceStub(self._channel)
        self._timeout = timeout

    async def check(self) -> None:
        await _check_serving(self._channel, self.name, self._timeout)

    async def model_info(self) -> tuple[ModelId, ScoreCalibration | None]:
        """The model the embedder serves, and its own same-product calibration (None: it carries none)."""
        try:
            reply = await self._stub.GetModelInfo(embedder_pb2.GetModelInfoRequest(), timeout=self._timeout)
        except grpc.aio.AioRpcError as err:
            raise from_downstream(self.name, err) from err
        model = convert.model_from_pb(reply)
        try:
            calibration = convert.calibration_from_pb(reply)
        except ValueError as err:
            raise FailedPrecondition(
                f"{self.name} reports an unusable same-product calibration for model {model.name} v{model.version}: {err}"
            ) from None
        return model, calibration

    async def embed(
        self, images: Sequence[tuple[bytes, Region | None]], localize: bool = False, trim_to_object: bool = False
    ) -> list[np.ndarray | ImageFault]:
        """One vector or fault per image, in order.

        `localize` suits shopper photos (busy scenes), `trim_to_object` catalog shots on a plain background.
        """
        return [result for result, _ in await self.embed_with_whole(images, localize, trim_to_object)]

    async def embed_with_whole(
        self, images: Sequence[tuple[bytes, Region | None]], localize: bool = False, trim_to_object: bool = False
    ) -> list[tuple[np.ndarray | ImageFault, np.ndarray | None]]:
        """embed(), each result with the whole photo's vector when the embedder localised the image."""
        request = embedder_pb2.EmbedRequest(
            images=[
                embedder_pb2.EmbedImage(
                    content=content,
                    region=convert.region_to_pb(region),
                    localize=localize,
                    trim_to_object=trim_to_object,
                )
                for content, region in images
            ]
        )
        try:
            reply = await self._stub.Embed(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as err:
            raise from_downstream(self.name, err) from err
        results: list[tuple[np.ndarray | ImageFault, np.ndarray | None]] = []
        for result in reply.results:
            whole = np.asarray(result.whole_image.values, dtype=np.float32) if result.HasField("whole_image") else None
            if result.HasField("embedding"):
                results.append((np.asarray(result.embedding.values, dtype=np.float32), whole))
            else:
                results.append((ImageFault(result.error.reason, result.error.message), None))
        return results

    async def close(self) -> None:
        await self._channel.close()


class RetrieverClient:
    name = "retriever"

    def __init__(self, address: str, provider: TracerProvider, timeout: float, max_message_bytes: int) -> None:
        self._channel = _channel(address, provider, max_message_bytes)
        self._stub = retriever_pb2_grpc.RetrieverServiceStub(self._channel)
        self._timeout = timeout

    async def check(self) -> None:
        await _check_serving(self._channel, self.name, self._timeout)

    async def _call(self, method, request):  # type: ignore[no-untyped-def]
        try:
            return await method(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as err:
            raise from_downstream(self.name, err) from err

    async def search(
        self,
        model: ModelId,
        *,
        vector: np.ndarray | None = None,
        product_id: str | None = None,
        top_k: int,
        filter_spec: FilterSpec,
        min_score: float,
        catalog: str = "",
    ) -> list[Hit]:
        request = retriever_pb2.VectorSearchRequest(
            model=convert.model_to_pb(model),
            catalog=catalog,
            top_k=top_k,
            filter=convert.filter_to_pb(filter_spec),
            min_score=min_score,
        )
        if vector is not None:
            request.vector.values.extend(vector.tolist())
        else:
            request.product_id = product_id or ""
        reply = await self._call(self._stub.Search, request)
        return [convert.hit_from_pb(hit) for hit in reply.hits]

    async def upsert(
        self, model: ModelId, products: Sequence[tuple[ProductRecord, list[tuple[str, np.ndarray]]]], catalog: str = ""
    ) -> None:
        request = retriever_pb2.UpsertRequest(model=convert.model_to_pb(model), catalog=catalog)
        for record, images in products:
            item = request.products.add(product=convert.product_to_pb(record))
            for uri, vector in images:
                item.images.add(uri=uri).vector.values.extend(vector.tolist())
        await self._call(self._stub.Upsert, request)

    async def delete(
        self, model: ModelId, product_ids: Sequence[str], catalog: str = ""
    ) -> tuple[list[str], list[str]]:
        reply = await self._call(
            self._stub.Delete,
            retriever_pb2.DeleteRequest(
                model=convert.model_to_pb(model), product_ids=list(product_ids), catalog=catalog
            ),
        )
        return list(reply.deleted), list(reply.not_found)

    async def get(self, model: ModelId, product_id: str, catalog: str = "") -> ProductRecord:
        reply = await self._call(
            self._stub.Get,
            retriever_pb2.GetRequest(model=convert.model_to_pb(model), product_id=product_id, catalog=catalog),
        )
        return convert.product_from_pb(reply)

    async def drop_catalog(self, model: ModelId, catalog: str) -> bool:
        reply = await self._call(
            self._stub.DropCatalog, retriever_pb2.DropCatalogRequest(model=convert.model_to_pb(model), catalog=catalog)
        )
        return reply.existed

    async def close(self) -> None:
        await self._channel.close()
