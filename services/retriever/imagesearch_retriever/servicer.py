"""Thin RetrieverService servicer: protobuf in, plain types to the core, protobuf out."""

from __future__ import annotations

import time

import numpy as np

from imagesearch.common import convert
from imagesearch.common.errors import InvalidArgument
from imagesearch.common.server import RpcContext
from imagesearch.common.types import Floats
from imagesearch.v1 import common_pb2, retriever_pb2, retriever_pb2_grpc
from imagesearch_retriever.core import RetrieverCore


def _deadline(context: RpcContext) -> float | None:
    """The caller's deadline on our monotonic clock (None when it set none): a write is not committed after it."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class RetrieverServicer(retriever_pb2_grpc.RetrieverServiceServicer):
    def __init__(self, core: RetrieverCore) -> None:
        self._core = core

    async def Search(
        self, request: retriever_pb2.VectorSearchRequest, context: RpcContext
    ) -> retriever_pb2.VectorSearchResponse:
        which = request.WhichOneof("query")
        query: Floats | str | list[Floats]
        if which == "vector":
            query = np.asarray(request.vector.values, dtype=np.float32)
        elif which == "product_id":
            query = request.product_id
        elif which == "any_of":
            query = [np.asarray(v.values, dtype=np.float32) for v in request.any_of.vectors]
        else:
            raise InvalidArgument("query must set one of vector, product_id or any_of")
        hits = await self._core.search(
            request.catalog,
            convert.model_from_pb(request.model),
            query,
            top_k=request.top_k,
            filter_spec=convert.filter_from_pb(request.filter),
            min_score=request.min_score,
        )
        return retriever_pb2.VectorSearchResponse(hits=[convert.hit_to_pb(hit) for hit in hits])

    async def Upsert(self, request: retriever_pb2.UpsertRequest, context: RpcContext) -> retriever_pb2.UpsertResponse:
        products = [
            (
                convert.product_from_pb(item.product),
                [(image.uri, np.asarray(image.vector.values, dtype=np.float32)) for image in item.images],
            )
            for item in request.products
        ]
        written, images = await self._core.upsert(
            request.catalog, convert.model_from_pb(request.model), products, _deadline(context)
        )
        return retriever_pb2.UpsertResponse(products=written, images=images)

    async def Delete(self, request: retriever_pb2.DeleteRequest, context: RpcContext) -> retriever_pb2.DeleteResponse:
        deleted, not_found = await self._core.delete(
            request.catalog, convert.model_from_pb(request.model), list(request.product_ids), _deadline(context)
        )
        return retriever_pb2.DeleteResponse(deleted=deleted, not_found=not_found)

    async def Get(self, request: retriever_pb2.GetRequest, context: RpcContext) -> common_pb2.Product:
        product = await self._core.get(request.catalog, convert.model_from_pb(request.model), request.product_id)
        return convert.product_to_pb(product)

    async def DropCatalog(
        self, request: retriever_pb2.DropCatalogRequest, context: RpcContext
    ) -> retriever_pb2.DropCatalogResponse:
        existed = await self._core.drop_catalog(request.catalog, convert.model_from_pb(request.model))
        return retriever_pb2.DropCatalogResponse(existed=existed)
