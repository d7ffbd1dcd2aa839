"""Session fixtures: the real Triton, Milvus and Redis, and the three services in-process.

Every dependency is the real server, started once per test session on free
ports in a temporary directory; services are served in-process on port 0 and
reached over real gRPC channels.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import (
    ADMIN_KEY,
    DEV_SET,
    KEYS_FILE,
    REPO,
    WRITE_WINDOW_SECONDS,
    base_model_repository,
    mini_catalog,
    open_channel,
)

from imagesearch.common.admission import AdmissionLimits
from imagesearch.common.telemetry import build_tracer_provider
from imagesearch.stack.milvus import LocalMilvus
from imagesearch.stack.redis import LocalRedis
from imagesearch.stack.triton import TritonServer
from imagesearch.v1 import search_pb2_grpc

# The CLI and client code under test (in this process and in the subprocesses it starts) send the
# tests' admin key, as a user's environment would.
os.environ["IMAGESEARCH_API_KEY"] = ADMIN_KEY
os.environ.pop("IMAGESEARCH_API_KEY_FILE", None)

# Telemetry configuration from the developer's shell must not leak into tests.
_NO_OTEL_ENV = {"OTEL_SDK_DISABLED": "false"}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def dev_set() -> Path:
    if not (DEV_SET / "catalog.csv").exists():
        pytest.skip(f"dev dataset not found at {DEV_SET}")
    return DEV_SET


@pytest.fixture(scope="session")
def adapted_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the base model repository with one version (3) adapted to 12 demo products, 64-d,
    with a learned localisation map in its SALIENCY."""
    from imagesearch.cli.main import main

    repo = base_model_repository(tmp_path_factory.mktemp("adapted_repo"))
    catalog = mini_catalog(tmp_path_factory.mktemp("mini"), 12)
    options = ["--views", "1", "--dimension", "64", "--learned-localisation", "--no-progress"]
    code = main(["adapt", str(catalog), "--model-repo", str(repo), *options])
    assert code == 0
    return repo


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    repository = base_model_repository(tmp_path_factory.mktemp("model_repo"))
    server = TritonServer(model_repository=repository, runtime_dir=tmp_path_factory.mktemp("triton"))
    server.start()
    try:
        server.wait_ready(timeout=180)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMilvus | None]:
    """The session's private Milvus (see milvus_uri); None when MILVUS_TEST_URI names a running one."""
    if os.environ.get("MILVUS_TEST_URI"):
        yield None
        return
    # The data dies with the session, so a quick stop is fine.
    milvus = LocalMilvus(base_dir=tmp_path_factory.mktemp("milvus"), stop_timeout=3.0)
    milvus.start()
    try:
        yield milvus
    finally:
        milvus.stop()


@pytest.fixture(scope="session")
def milvus_uri(milvus_server: LocalMilvus | None) -> str:
    """One private Milvus on free ports for the session; MILVUS_TEST_URI points the tests at a running one.

    Tests isolate themselves with their own collection prefixes (`unique_prefix`) or catalogs,
    never by starting another server.
    """
    return milvus_server.uri if milvus_server is not None else os.environ["MILVUS_TEST_URI"]


@pytest.fixture
def unique_prefix() -> str:
    """A collection prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """A private redis-server: tests flush and stop it, so never the machine's shared one."""
    redis = LocalRedis(dir=tmp_path_factory.mktemp("redis"))
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def _provider(name: str, exporter: InMemorySpanExporter):  # type: ignore[no-untyped-def]
    return build_tracer_provider(name, extra_processors=(SimpleSpanProcessor(exporter),), environ=_NO_OTEL_ENV)


class Fleet:
    """The three services running in-process against the real dependencies."""

    def __init__(self, embedder, retriever, gateway, gateway_backend) -> None:  # type: ignore[no-untyped-def]
        self.embedder = embedder
        self.retriever = retriever
        self.gateway = gateway
        self.gateway_backend = gateway_backend
        self._extra: list = []

    async def start_gateway(
        self,
        *,
        collection_prefix: str | None = None,
        redis_url: str | None = None,
        exporter: InMemorySpanExporter | None = None,
        **settings: object,
    ):  # type: ignore[no-untyped-def]
        """Another gateway (and, with a collection prefix, its own retriever) sharing the embedder.
        `settings` override GatewaySettings fields (e.g. retrieve_timeout_seconds=0.1)."""
        from imagesearch.common.server import ServerOptions, ServiceServer
        from imagesearch_gateway.app import GatewayBackend
        from imagesearch_gateway.settings import GatewaySettings
        from imagesearch_retriever.app import build_server as build_retriever
        from imagesearch_retriever.settings import RetrieverSettings

        exporter = exporter or InMemorySpanExporter()
        retriever_addr = self.retriever.address
        if collection_prefix is not None:
            retriever = build_retriever(
                RetrieverSettings.from_env(
                    {
                        "RETRIEVER_HOST": "127.0.0.1",
                        "RETRIEVER_PORT": "0",
                        "RETRIEVER_METRICS_PORT": "0",
                        "MILVUS_URI": self.milvus_uri,
                        "RETRIEVER_COLLECTION_PREFIX": collection_prefix,
                    }
                ),
                _provider("retriever", exporter),
            )
            await retriever.start()
            await retriever.wait_until_serving(timeout=60)
            self._extra.append(retriever)
            retriever_addr = retriever.address
        fields: dict[str, object] = {
            "host": "127.0.0.1",
            "port": 0,
            "embedder_addr": self.embedder.address,
            "retriever_addr": retriever_addr,
            "redis_url": redis_url if redis_url is not None else self.redis_url,
            "cache_retry_seconds": 0.5,
            "cache_write_window_seconds": WRITE_WINDOW_SECONDS,
            "api_keys_file": str(KEYS_FILE),
            "api_keys_reload_seconds": 0.2,
            "max_message_bytes": 8 * 1024 * 1024,
        }
        config = GatewaySettings(**{**fields, **settings})  # type: ignore[arg-type]
        provider = _provider("gateway", exporter)
        backend = GatewayBackend(config, provider)
        gateway = ServiceServer(
            "gateway",
            backend,
            ServerOptions(
                host=config.host,
                port=0,
                max_message_bytes=config.max_message_bytes,
                connect_retry_seconds=0.2,
                health_check_interval_seconds=1.0,
                admission=AdmissionLimits(config.max_in_flight, config.max_in_flight_bytes),
                reflection=config.reflection,
                trust_trace_context=config.trust_trace_context,
                tls=config.tls_files,
                metrics_port=0,
            ),
            provider,
        )
        await gateway.start()
        await gateway.wait_until_serving(timeout=60)
        self._extra.append(gateway)
        return gateway, backend

    async def stop_extra(self) -> None:
        for server in reversed(self._extra):
            await server.stop(1)
        self._extra.clear()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def fleet(
    triton_server: TritonServer, milvus_uri: str, redis_server: LocalRedis, span_exporter: InMemorySpanExporter
) -> AsyncIterator[Fleet]:
    from imagesearch_embedder.app import build_server as build_embedder
    from imagesearch_embedder.settings import EmbedderSettings
    from imagesearch_retriever.app import build_server as build_retriever
    from imagesearch_retriever.settings import RetrieverSettings

    embedder = build_embedder(
        EmbedderSettings.from_env(
            {
                "EMBEDDER_HOST": "127.0.0.1",
                "EMBEDDER_PORT": "0",
                "EMBEDDER_METRICS_PORT": "0",
                "TRITON_URL": triton_server.grpc_url,
            }
        ),
        _provider("embedder", span_exporter),
    )
    retriever = build_retriever(
        RetrieverSettings.from_env(
            {
                "RETRIEVER_HOST": "127.0.0.1",
                "RETRIEVER_PORT": "0",
                "RETRIEVER_METRICS_PORT": "0",
                "RETRIEVER_CATALOG_COUNT_SECONDS": "1",
                "MILVUS_URI": milvus_uri,
                "RETRIEVER_COLLECTION_PREFIX": "e2e",
            }
        ),
        _provider("retriever", span_exporter),
    )
    await embedder.start()
    await retriever.start()
    await embedder.wait_until_serving(timeout=120)
    await retriever.wait_until_serving(timeout=120)
    fleet = Fleet(embedder, retriever, None, None)
    fleet.milvus_uri = milvus_uri
    fleet.redis_url = redis_server.url
    fleet.gateway, fleet.gateway_backend = await fleet.start_gateway(exporter=span_exporter)
    fleet._extra.clear()  # the main gateway is stopped below, not by stop_extra()
    try:
        yield fleet
    finally:
        await fleet.stop_extra()
        await fleet.gateway.stop(1)
        await retriever.stop(1)
        await embedder.stop(1)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gateway(fleet: Fleet) -> AsyncIterator[search_pb2_grpc.SearchServiceStub]:
    """A client of the public API over a real channel."""
    async with open_channel(fleet.gateway.address) as channel:
        yield search_pb2_grpc.SearchServiceStub(channel)
