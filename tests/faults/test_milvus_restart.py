"""Milvus killed and restarted on its own data: the retriever fails fast while it is gone, and afterwards
answers with the whole catalog or UNAVAILABLE, never an empty or partial one, until it recovers by
itself. Nothing in the test restarts the retriever."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common.server import ServerOptions, ServiceServer
from imagesearch.stack.milvus import LocalMilvus
from imagesearch.v1 import common_pb2, embedder_pb2, retriever_pb2, retriever_pb2_grpc
from imagesearch_retriever.app import RetrieverBackend
from imagesearch_retriever.settings import RetrieverSettings

pytestmark = pytest.mark.asyncio(loop_scope="session")

DIM = 32
MODEL = common_pb2.ModelInfo(name="restart", version="1", dimension=DIM)
PRODUCTS = 40
SERVING = health_pb2.HealthCheckResponse.SERVING
LAST_ERRORS: list[str] = []


def unit(rng: np.random.Generator) -> list[float]:
    v = rng.standard_normal(DIM)
    return (v / np.linalg.norm(v)).tolist()


@pytest.fixture
async def milvus(tmp_path: Path) -> AsyncIterator[list[LocalMilvus]]:
    """[the running Milvus]: a test that restarts it replaces the entry, and the new one is stopped."""
    running = [LocalMilvus(tmp_path / "milvus", stop_timeout=3)]
    await asyncio.to_thread(running[0].start)
    yield running
    await asyncio.to_thread(running[-1].stop)


@pytest.fixture
async def retriever(milvus: list[LocalMilvus]) -> AsyncIterator[ServiceServer]:
    settings = RetrieverSettings.from_env(
        {
            "RETRIEVER_HOST": "127.0.0.1",
            "RETRIEVER_PORT": "0",
            "RETRIEVER_METRICS_PORT": "0",
            "MILVUS_URI": milvus[0].uri,
            "RETRIEVER_TIMEOUT_SECONDS": "3",
        }
    )
    provider = TracerProvider()
    # Health probed every 0.5 s (5 s by default), as a test can afford.
    options = ServerOptions(host="127.0.0.1", port=0, health_check_interval_seconds=0.5, connect_retry_seconds=0.2)
    server = ServiceServer("retriever", RetrieverBackend(settings, provider), options, provider)
    await server.start()
    await server.wait_until_serving(timeout=60)
    yield server
    await server.stop(1)


async def attempt(call: object) -> tuple[grpc.StatusCode, float, int]:
    started = time.monotonic()
    try:
        reply = await call  # type: ignore[misc]
        return grpc.StatusCode.OK, time.monotonic() - started, len(reply.hits)
    except grpc.aio.AioRpcError as err:
        assert err.code() != grpc.StatusCode.INTERNAL, err.details()
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            assert "milvus" in (err.details() or ""), err.details()
        LAST_ERRORS.append(err.details() or "")
        return err.code(), time.monotonic() - started, 0


async def test_searches_fail_fast_while_milvus_is_down_and_are_whole_once_it_is_back(
    milvus: list[LocalMilvus], retriever: ServiceServer
) -> None:
    rng = np.random.default_rng(3)
    async with grpc.aio.insecure_channel(retriever.address) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        products = [
            retriever_pb2.IndexedProduct(
                product=common_pb2.Product(product_id=f"m{i:02d}", category="c"),
                images=[retriever_pb2.IndexedImage(uri=f"m/{i}", vector=embedder_pb2.Embedding(values=unit(rng)))],
            )
            for i in range(PRODUCTS)
        ]
        # A new collection is created and loaded by the first write; on a busy machine loading may outlast
        # one call (UNAVAILABLE, "still loading"): a client retries, as here.
        for _ in range(20):
            try:
                await stub.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=products), timeout=60)
                break
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE and "loading" in (err.details() or ""), err
                await asyncio.sleep(0.5)

        def search() -> object:
            request = retriever_pb2.VectorSearchRequest(
                model=MODEL, vector=embedder_pb2.Embedding(values=unit(rng)), top_k=PRODUCTS, min_score=-1.0
            )
            return stub.Search(request, timeout=5)

        assert (await attempt(search()))[2] == PRODUCTS

        crashed = milvus[0]
        await asyncio.to_thread(crashed.kill)
        down = [await attempt(search()) for _ in range(12)]
        assert all(code != grpc.StatusCode.OK for code, _, _ in down), down
        # Once the first failure has opened the breaker, the rest fail at once.
        assert max(seconds for _, seconds, _ in down[2:]) < 1.0, down
        print(
            f"milvus killed: first failure after {down[0][1]:.2f} s, then at most "
            f"{max(seconds for _, seconds, _ in down[2:]) * 1000:.0f} ms each"
        )
        await asyncio.sleep(1.0)
        status = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert status.status != SERVING

        milvus.append(LocalMilvus(crashed.base_dir, port=crashed.port, stop_timeout=3))
        await asyncio.to_thread(milvus[-1].start)  # the same port and data folder: a restart
        back_at = time.monotonic()
        outcomes: list[tuple[grpc.StatusCode, float, int]] = []
        while time.monotonic() - back_at < 15:
            outcomes.append(outcome := await attempt(search()))
            if outcome[0] == grpc.StatusCode.OK and len(outcomes) > 3 and outcomes[-2][0] == grpc.StatusCode.OK:
                break
            await asyncio.sleep(0.1)
        recovered = time.monotonic() - back_at
        codes = Counter(code for code, _, _ in outcomes)
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
        # Never an empty or partial catalog: a search answers with all of it, or not at all.
        assert all(hits == PRODUCTS for code, _, hits in outcomes if code == grpc.StatusCode.OK), outcomes
        assert outcomes[-1][0] == grpc.StatusCode.OK and recovered < 10, (recovered, codes, LAST_ERRORS[-3:])
        print(f"milvus restart: recovered {recovered:.1f} s after Milvus answered again; {dict(codes)}")
        status = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert status.status == SERVING
