"""Admission control: a server holds at most its limit of calls and request bytes, refuses the rest at
once with RESOURCE_EXHAUSTED, and never refuses health checks; budgets never wait and never leak."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imagesearch.common.admission import AdmissionLimits
from imagesearch.common.budget import Budget
from imagesearch.common.errors import ResourceExhausted
from imagesearch.common.server import ServerOptions, ServiceServer
from imagesearch.common.telemetry import build_tracer_provider

Request = health_pb2.HealthCheckRequest  # any message will do; its `service` field gives it a size


# ---- the budget (pure logic)


def test_a_budget_refuses_what_does_not_fit_and_says_how_much_is_in_use() -> None:
    budget = Budget(100, "decode memory", lambda n: f"{n} B")
    budget.acquire(60)
    with pytest.raises(ResourceExhausted, match=r"decode memory is exhausted: 60 B of 100 B in use, this needs 50 B"):
        budget.acquire(50)
    budget.acquire(40)
    budget.release(100)
    assert budget.used == 0


def test_one_reservation_larger_than_the_whole_budget_is_admitted_alone() -> None:
    budget = Budget(100, "x")
    budget.acquire(500)  # nothing else in flight: refusing it would refuse it forever
    with pytest.raises(ResourceExhausted):
        budget.acquire(1)


def test_a_ledger_releases_what_its_request_reserved_once_the_request_and_its_workers_are_done() -> None:
    budget = Budget(100, "x")
    worker_may_finish = threading.Event()

    with budget.ledger() as ledger:

        def worker() -> None:
            with ledger.working():
                ledger.reserve(30)
                worker_may_finish.wait(5)

        thread = threading.Thread(target=worker)
        thread.start()
        ledger.reserve(20)
        while budget.used < 50:
            time.sleep(0.001)
    # The request ended (as a cancelled one does) while its worker still holds decoded pixels.
    assert budget.used == 50
    worker_may_finish.set()
    thread.join()
    assert budget.used == 0


def test_a_failed_reservation_holds_nothing() -> None:
    budget = Budget(10, "x")
    with budget.ledger() as ledger:
        ledger.reserve(8)
        with pytest.raises(ResourceExhausted):
            ledger.reserve(5)
        assert budget.used == 8
    assert budget.used == 0


# ---- the interceptor, on a real server


class SlowBackend:
    """One unary method, `test.Slow/Wait`, that holds its call until `release` is set."""

    service_names = ("test.Slow",)

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    def register(self, server: grpc.aio.Server) -> None:
        async def wait(request: Request, context: object) -> Request:
            self.entered += 1
            await self.release.wait()
            return request

        handler = grpc.unary_unary_rpc_method_handler(
            wait, request_deserializer=Request.FromString, response_serializer=Request.SerializeToString
        )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Slow", {"Wait": handler}),))

    async def connect(self) -> None:
        pass

    async def check(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def serve(backend: SlowBackend, limits: AdmissionLimits) -> ServiceServer:
    options = ServerOptions(host="127.0.0.1", port=0, admission=limits)
    server = ServiceServer("slow", backend, options, build_tracer_provider("test", environ={}))
    await server.start()
    await server.wait_until_serving(timeout=5)
    return server


def wait_call(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable[Request, Request]:
    return channel.unary_unary(
        "/test.Slow/Wait", request_serializer=Request.SerializeToString, response_deserializer=Request.FromString
    )


async def until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_calls_beyond_the_limit_are_refused_at_once_and_health_still_answers() -> None:
    backend = SlowBackend()
    server = await serve(backend, AdmissionLimits(max_in_flight=3))
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            call = wait_call(channel)
            held = [asyncio.ensure_future(call(Request(service="a"), timeout=10)) for _ in range(3)]
            await until(lambda: backend.entered == 3)

            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(Request(service="b"), timeout=10)
            assert time.monotonic() - started < 1.0
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "slow: concurrent calls is exhausted: 3 calls of 3 calls in use" in (refused.value.details() or "")

            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING

            backend.release.set()
            assert [reply.service for reply in await asyncio.gather(*held)] == ["a", "a", "a"]
            assert (await call(Request(service="c"), timeout=10)).service == "c"  # the slots came back
            assert server.admission.calls_in_flight == 0
            assert server.admission.refused == {"calls": 1, "bytes": 0}  # imagesearch_admission_refused_total
    finally:
        await server.stop(1)


async def test_request_bytes_beyond_the_limit_are_refused_at_once() -> None:
    backend = SlowBackend()
    server = await serve(backend, AdmissionLimits(max_in_flight=100, max_in_flight_bytes=10_000))
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            call = wait_call(channel)
            held = asyncio.ensure_future(call(Request(service="x" * 8_000), timeout=10))
            await until(lambda: backend.entered == 1)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(Request(service="y" * 4_000), timeout=10)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "slow: request memory is exhausted" in (refused.value.details() or "")
            assert server.admission.refused == {"calls": 0, "bytes": 1}
            backend.release.set()
            await held
    finally:
        await server.stop(1)
