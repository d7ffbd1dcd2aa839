"""Wires the retriever: the Milvus client is built at connect() and closed at close()."""

from __future__ import annotations

import grpc
from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common.server import ServerOptions, ServiceServer
from imagesearch.v1 import retriever_pb2, retriever_pb2_grpc
from imagesearch_retriever.core import RetrieverCore
from imagesearch_retriever.milvus_store import HnswParams, MilvusStore
from imagesearch_retriever.servicer import RetrieverServicer
from imagesearch_retriever.settings import RetrieverSettings

SERVICE_NAME = retriever_pb2.DESCRIPTOR.services_by_name["RetrieverService"].full_name


class RetrieverBackend:
    service_names = (SERVICE_NAME,)

    def __init__(self, settings: RetrieverSettings, tracer_provider: TracerProvider) -> None:
        self.store = MilvusStore(
            settings.milvus_uri,
            token=settings.milvus_token,
            db_name=settings.milvus_db,
            prefix=settings.collection_prefix,
            hnsw=HnswParams(settings.hnsw_m, settings.hnsw_ef_construction, settings.hnsw_ef_search),
            timeout_seconds=settings.timeout_seconds,
            read_consistency=settings.read_consistency,
            tracer_provider=tracer_provider,
        )
        # Until connect() succeeds every call fails UNAVAILABLE (the store has no client yet).
        self.core = RetrieverCore(self.store, max_top_k=settings.max_top_k)

    def register(self, server: grpc.aio.Server) -> None:
        retriever_pb2_grpc.add_RetrieverServiceServicer_to_server(RetrieverServicer(self.core), server)

    async def connect(self) -> None:
        await self.store.connect()  # builds the MilvusClient and lists collections

    async def check(self) -> None:
        await self.store.check()

    async def close(self) -> None:
        await self.store.close()


def build_server(settings: RetrieverSettings, tracer_provider: TracerProvider) -> ServiceServer:
    options = ServerOptions(host=settings.host, port=settings.port, max_message_bytes=settings.max_message_bytes)
    return ServiceServer("retriever", RetrieverBackend(settings, tracer_provider), options, tracer_provider)
