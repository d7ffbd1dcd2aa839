"""Mutual TLS between the gateway and the internal services: with a client CA set, the embedder
and retriever refuse callers without a certificate it signed; the gateway, given one, works."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace import TracerProvider
from support import TlsBundle, open_channel, product_input, solid_jpeg

from imagesearch.common.server import ServiceServer
from imagesearch.v1 import retriever_pb2, retriever_pb2_grpc, search_pb2, search_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def internal(
    fleet: Any, triton_server: Any, milvus_uri: str, tmp_path: Path
) -> AsyncIterator[tuple[TlsBundle, ServiceServer, ServiceServer]]:
    from imagesearch_embedder.app import build_server as build_embedder
    from imagesearch_embedder.settings import EmbedderSettings
    from imagesearch_retriever.app import build_server as build_retriever
    from imagesearch_retriever.settings import RetrieverSettings

    tls = TlsBundle(tmp_path / "internal", "internal")  # one CA signs the servers' and the gateway's
    embedder = build_embedder(
        EmbedderSettings.from_env(
            {
                "EMBEDDER_HOST": "127.0.0.1",
                "EMBEDDER_PORT": "0",
                "EMBEDDER_METRICS_PORT": "0",
                "TRITON_URL": triton_server.grpc_url,
                "EMBEDDER_TLS_CERT_FILE": str(tls.cert),
                "EMBEDDER_TLS_KEY_FILE": str(tls.key),
                "EMBEDDER_TLS_CLIENT_CA_FILE": str(tls.ca),
            }
        ),
        TracerProvider(),
    )
    retriever = build_retriever(
        RetrieverSettings.from_env(
            {
                "RETRIEVER_HOST": "127.0.0.1",
                "RETRIEVER_PORT": "0",
                "RETRIEVER_METRICS_PORT": "0",
                "MILVUS_URI": milvus_uri,
                "RETRIEVER_COLLECTION_PREFIX": "mtls",
                "RETRIEVER_TLS_CERT_FILE": str(tls.cert),
                "RETRIEVER_TLS_KEY_FILE": str(tls.key),
                "RETRIEVER_TLS_CLIENT_CA_FILE": str(tls.ca),
            }
        ),
        TracerProvider(),
    )
    for server in (embedder, retriever):
        await server.start()
    try:
        for server in (embedder, retriever):
            await server.wait_until_serving(timeout=60)
        yield tls, embedder, retriever
    finally:
        for server in (retriever, embedder):
            await server.stop(1)


async def drop(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    channel = grpc.aio.secure_channel(address, credentials) if credentials else grpc.aio.insecure_channel(address)
    async with channel:
        try:
            await retriever_pb2_grpc.RetrieverServiceStub(channel).DropCatalog(
                retriever_pb2.DropCatalogRequest(catalog="nothing_here"), timeout=5
            )
        except grpc.aio.AioRpcError as err:
            return err.code()
    return grpc.StatusCode.OK


async def test_the_retriever_refuses_callers_without_a_client_certificate(
    internal: tuple[TlsBundle, ServiceServer, ServiceServer],
) -> None:
    tls, _, retriever = internal
    address = f"localhost:{retriever.port}"
    assert await drop(address, None) == grpc.StatusCode.UNAVAILABLE  # plaintext
    anonymous = grpc.ssl_channel_credentials(tls.ca.read_bytes())  # TLS, but no certificate of its own
    assert await drop(address, anonymous) == grpc.StatusCode.UNAVAILABLE
    stranger = TlsBundle(tls.ca.parent / "stranger", "stranger")  # a certificate from another CA
    other = grpc.ssl_channel_credentials(tls.ca.read_bytes(), stranger.key.read_bytes(), stranger.cert.read_bytes())
    assert await drop(address, other) == grpc.StatusCode.UNAVAILABLE
    mine = grpc.ssl_channel_credentials(tls.ca.read_bytes(), tls.key.read_bytes(), tls.cert.read_bytes())
    assert await drop(address, mine) == grpc.StatusCode.INVALID_ARGUMENT  # through: the request itself is judged


async def test_a_gateway_with_its_certificate_serves_through_mutual_tls(
    fleet: Any, internal: tuple[TlsBundle, ServiceServer, ServiceServer], tmp_path: Path
) -> None:
    tls, embedder, retriever = internal
    gateway, _ = await fleet.start_gateway(
        embedder_addr=f"localhost:{embedder.port}",
        retriever_addr=f"localhost:{retriever.port}",
        internal_tls_ca_file=str(tls.ca),
        internal_tls_cert_file=str(tls.cert),
        internal_tls_key_file=str(tls.key),
    )
    try:
        image = solid_jpeg(tmp_path / "red.jpg", (200, 30, 30)).read_bytes()
        async with open_channel(gateway.address) as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            await stub.UpsertProducts(
                search_pb2.UpsertProductsRequest(catalog="mtls", products=[product_input("m-1", [image])]), timeout=60
            )
            reply = await stub.Search(search_pb2.SearchRequest(catalog="mtls", image=image, top_k=1), timeout=30)
            assert reply.hits[0].product_id == "m-1"
            await stub.DeleteCatalog(search_pb2.DeleteCatalogRequest(catalog="mtls"), timeout=30)
    finally:
        await fleet.stop_extra()
