"""Triton hung (SIGSTOP) under load: once the embedder has noticed, calls fail in milliseconds with
UNAVAILABLE naming Triton instead of each waiting out its deadline; after SIGCONT it serves again by
itself. A private Triton: the session's one serves every other test."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from PIL import Image
from support import base_model_repository

from imagesearch.common.server import ServerOptions, ServiceServer
from imagesearch.stack.triton import TritonServer
from imagesearch.v1 import embedder_pb2, embedder_pb2_grpc
from imagesearch_embedder.app import EmbedderBackend
from imagesearch_embedder.settings import EmbedderSettings

pytestmark = pytest.mark.asyncio(loop_scope="session")

CALLS_PER_SECOND = 10
CALL_DEADLINE = 3.0


@pytest.fixture
def triton(tmp_path: Path) -> Iterator[TritonServer]:
    with TritonServer(base_model_repository(tmp_path / "repo"), tmp_path / "triton") as server:
        yield server


@pytest.fixture
async def embedder(triton: TritonServer) -> AsyncIterator[ServiceServer]:
    settings = EmbedderSettings.from_env(
        {
            "EMBEDDER_HOST": "127.0.0.1",
            "EMBEDDER_PORT": "0",
            "EMBEDDER_METRICS_PORT": "0",
            "TRITON_URL": triton.grpc_url,
        }
    )
    provider = TracerProvider()
    options = ServerOptions(host="127.0.0.1", port=0, health_check_interval_seconds=0.5, connect_retry_seconds=0.2)
    server = ServiceServer("embedder", EmbedderBackend(settings, provider), options, provider)
    await server.start()
    await server.wait_until_serving(timeout=120)
    yield server
    await server.stop(1)


def photo() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (30, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()


async def test_a_hung_triton_is_failed_fast_and_recovered_from_by_itself(
    triton: TritonServer, embedder: ServiceServer
) -> None:
    request = embedder_pb2.EmbedRequest(images=[embedder_pb2.EmbedImage(content=photo())])
    records: list[tuple[float, float, grpc.StatusCode, str]] = []  # (started, seconds, code, details)
    stop = asyncio.Event()

    async with grpc.aio.insecure_channel(embedder.address) as channel:
        stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)

        async def call() -> None:
            started = time.monotonic()
            try:
                await stub.Embed(request, timeout=CALL_DEADLINE)
                code, details = grpc.StatusCode.OK, ""
            except grpc.aio.AioRpcError as err:
                code, details = err.code(), err.details() or ""
            records.append((started, time.monotonic() - started, code, details))

        async def load() -> None:
            """A new call every 1/CALLS_PER_SECOND s, whether the earlier ones have answered or not."""
            calls = []
            while not stop.is_set():
                calls.append(asyncio.create_task(call()))
                await asyncio.sleep(1 / CALLS_PER_SECOND)
            await asyncio.gather(*calls)

        workers = [asyncio.create_task(load())]
        await asyncio.sleep(1.0)
        assert records and all(code == grpc.StatusCode.OK for _, _, code, _ in records)

        pid = triton._proc.pid  # type: ignore[union-attr]
        os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            await asyncio.sleep(6.0)
            assert (await health.Check(health_pb2.HealthCheckRequest(), timeout=2)).status != 1
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed_at = time.monotonic()
        await asyncio.sleep(0.1)
        while time.monotonic() - resumed_at < 10:
            if any(r[2] == grpc.StatusCode.OK and r[0] > resumed_at for r in records[-5:]):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*workers)

    during = [r for r in records if stopped_at <= r[0] < resumed_at]
    codes = Counter(code for _, _, code, _ in records)
    assert grpc.StatusCode.INTERNAL not in codes, codes
    failures = [r for r in during if r[2] != grpc.StatusCode.OK]
    assert failures, "nothing failed while Triton was stopped"
    fast = [r for r in failures if r[1] < 1.0]
    assert fast, "every failure waited out its deadline"
    detected = fast[0][0] - stopped_at
    # Once noticed, every call fails fast, naming Triton.
    after_detection = [r for r in failures if r[0] > fast[0][0]]
    assert all(r[1] < 1.0 and r[2] == grpc.StatusCode.UNAVAILABLE for r in after_detection), after_detection[:3]
    assert all("triton" in r[3] for r in after_detection)
    recovered = [r for r in records if r[0] > resumed_at and r[2] == grpc.StatusCode.OK]
    assert recovered, "the embedder did not serve again within 10 s of SIGCONT"
    recovery = recovered[0][0] + recovered[0][1] - resumed_at
    print(
        f"triton SIGSTOP: fast failures from {detected:.1f} s on "
        f"(slowest after that {max(r[1] for r in after_detection) * 1000:.0f} ms); "
        f"served again {recovery:.1f} s after SIGCONT; {dict(codes)}"
    )
