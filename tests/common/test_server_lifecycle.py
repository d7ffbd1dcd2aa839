"""The shared server lifecycle: NOT_SERVING until dependencies answer, liveness apart, graceful drain."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imagesearch.common.server import ServerOptions, ServiceServer
from imagesearch.common.telemetry import build_tracer_provider

pytestmark = pytest.mark.asyncio(loop_scope="session")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class FlakyBackend:
    """A dependency that is down until `up` is set."""

    service_names = ("test.Service",)

    def __init__(self) -> None:
        self.up = False
        self.closed = False

    def register(self, server: grpc.aio.Server) -> None:
        pass

    async def connect(self) -> None:
        if not self.up:
            raise ConnectionError("dependency down")

    async def check(self) -> None:
        await self.connect()

    async def close(self) -> None:
        self.closed = True


async def status(address: str, service: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
        return reply.status


async def test_health_follows_the_dependencies_and_liveness_stays_up() -> None:
    backend = FlakyBackend()
    options = ServerOptions(host="127.0.0.1", port=0, connect_retry_seconds=0.05, health_check_interval_seconds=0.05)
    server = ServiceServer("test", backend, options, build_tracer_provider("test", environ={}))
    await server.start()
    try:
        assert await status(server.address, "") == NOT_SERVING
        assert await status(server.address, "test.Service") == NOT_SERVING
        assert await status(server.address, "liveness") == SERVING

        backend.up = True
        await server.wait_until_serving(timeout=5)
        assert await status(server.address, "") == SERVING

        backend.up = False  # the dependency goes away: out of rotation, but alive
        await asyncio.sleep(0.3)
        assert await status(server.address, "") == NOT_SERVING
        assert await status(server.address, "liveness") == SERVING

        backend.up = True
        await asyncio.sleep(0.3)
        assert await status(server.address, "") == SERVING
    finally:
        await server.stop(0.5)
    assert backend.closed
