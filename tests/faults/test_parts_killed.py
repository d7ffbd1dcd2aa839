"""A part of the fleet killed (SIGKILL) under load: Triton, the embedder, the retriever.

Each runs in a process of its own, with the gateway in front. While a part is down, the calls that
need it fail in well under a second with UNAVAILABLE naming it, and the calls that do not need it
go on being served: a dead Triton or embedder takes neither `GetProduct` nor cached answers out, a
dead retriever not cached answers. Once the part is started again (as Kubernetes or `imagesearch
up` would) everything is served again by itself within seconds: the test restarts nothing else.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import ServiceProcess, base_model_repository, open_channel, product_input, read_rows

from imagesearch.stack.triton import TritonServer
from imagesearch.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROUNDS_PER_SECOND = 10  # each round: one uncached search, one cached search, one GetProduct
CALL_DEADLINE = 3.0
FAST = 1.0  # what "fails fast" means, once the fault is known
RECOVERY = 10.0  # served again within this long of the part answering again
CATALOG = "killed"


@dataclass(frozen=True)
class Outcome:
    rpc: str
    started: float
    seconds: float
    code: grpc.StatusCode
    details: str


@dataclass
class Fleet:
    triton: TritonServer
    embedder: ServiceProcess
    retriever: ServiceProcess
    gateway: ServiceProcess


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """Private: the session's Triton serves every other test."""
    folder = tmp_path_factory.mktemp("killed-triton")
    with TritonServer(base_model_repository(folder / "repo"), folder / "triton") as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fleet(
    triton: TritonServer, milvus_uri: str, redis_server: object, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Fleet]:
    logs = tmp_path_factory.mktemp("killed-logs")
    embedder = ServiceProcess("embedder", {"TRITON_URL": triton.grpc_url}, logs)
    retriever = ServiceProcess("retriever", {"MILVUS_URI": milvus_uri, "RETRIEVER_COLLECTION_PREFIX": "killed"}, logs)
    gateway = ServiceProcess(
        "gateway",
        {
            "EMBEDDER_ADDR": embedder.address,
            "RETRIEVER_ADDR": retriever.address,
            "REDIS_URL": redis_server.url,  # type: ignore[attr-defined]
            "CACHE_NAMESPACE": "killed",
            "CACHE_WRITE_WINDOW_SECONDS": "1",
        },
        logs,
    )
    async with embedder, retriever, gateway:
        yield Fleet(triton, embedder, retriever, gateway)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def catalog(fleet: Fleet, dev_set: Path) -> AsyncIterator[bytes]:
    """Three products; the query image (the first one's photo)."""
    rows = read_rows(dev_set / "catalog.csv")[:3]
    images = [(dev_set / row["image"]).read_bytes() for row in rows]
    async with open_channel(fleet.gateway.address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        products = [product_input(f"k-{i}", [image]) for i, image in enumerate(images)]
        await stub.UpsertProducts(search_pb2.UpsertProductsRequest(catalog=CATALOG, products=products), timeout=60)
        await asyncio.sleep(1.1)  # past the write window: answers may be cached again
        yield images[0]
        await stub.DeleteCatalog(search_pb2.DeleteCatalogRequest(catalog=CATALOG), timeout=30)


async def _under_load(
    fleet: Fleet, query: bytes, fault: Callable[[], Awaitable[float]]
) -> tuple[list[Outcome], float, float, list[int]]:
    """Rounds of calls, each started on time whether earlier ones answered or not, around `fault`
    (which breaks a part, repairs it and returns when it answers again). Returns the outcomes,
    when the fault began and when the part answered again, and the gateway's health statuses."""
    records: list[Outcome] = []
    health_seen: list[int] = []
    stop = asyncio.Event()
    async with open_channel(fleet.gateway.address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "search": lambda: stub.Search(
                search_pb2.SearchRequest(catalog=CATALOG, image=query, top_k=3, skip_cache=True), timeout=CALL_DEADLINE
            ),
            "cached": lambda: stub.Search(
                search_pb2.SearchRequest(catalog=CATALOG, image=query, top_k=3), timeout=CALL_DEADLINE
            ),
            "get": lambda: stub.GetProduct(
                search_pb2.GetProductRequest(catalog=CATALOG, product_id="k-1"), timeout=CALL_DEADLINE
            ),
        }
        assert (await calls["search"]()).hits  # type: ignore[attr-defined]
        await calls["cached"]()
        assert (await calls["cached"]()).cache_hit  # type: ignore[attr-defined]

        async def one(rpc: str) -> None:
            started = time.monotonic()
            try:
                await calls[rpc]()
                code, details = grpc.StatusCode.OK, ""
            except grpc.aio.AioRpcError as err:
                code, details = err.code(), err.details() or ""
            records.append(Outcome(rpc, started, time.monotonic() - started, code, details))

        async def load() -> None:
            tasks = []
            while not stop.is_set():
                tasks += [asyncio.create_task(one(rpc)) for rpc in calls]
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=CALL_DEADLINE)
                    health_seen.append(reply.status)
                except grpc.aio.AioRpcError:
                    health_seen.append(-1)
                await asyncio.sleep(1 / ROUNDS_PER_SECOND)
            await asyncio.gather(*tasks)

        worker = asyncio.create_task(load())
        await asyncio.sleep(1.0)
        began = time.monotonic()
        answering = await fault()
        # Served again: the last few uncached searches and product reads all succeeded.
        while time.monotonic() - answering < RECOVERY + 2:
            recent = [r for r in records if r.started > answering and r.rpc != "cached"][-6:]
            if len(recent) == 6 and all(r.code == grpc.StatusCode.OK for r in recent):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await worker
    return records, began, answering, health_seen


def _check(
    records: list[Outcome], began: float, answering: float, need_it: set[str], part: str
) -> tuple[float, float, float]:
    """The assertions every fault shares; (detected after, slowest fast failure, recovered after)."""
    codes = Counter((r.rpc, r.code.name) for r in records)
    assert not any(code == "INTERNAL" for _, code in codes), codes
    during = [r for r in records if began <= r.started < answering]
    for rpc in {"search", "cached", "get"} - need_it:
        failed = [r for r in records if r.rpc == rpc and r.code != grpc.StatusCode.OK]
        assert not failed, f"{rpc} does not need the {part}, yet failed: {failed[:3]}"
    failures = [r for r in during if r.rpc in need_it and r.code != grpc.StatusCode.OK]
    assert failures, f"nothing failed while the {part} was down"
    fast = [r for r in failures if r.seconds < FAST]
    assert fast, "every failure waited out its deadline"
    after = [r for r in failures if r.started > fast[0].started]
    slow_or_other = [r for r in after if r.seconds >= FAST or r.code != grpc.StatusCode.UNAVAILABLE]
    assert not slow_or_other, slow_or_other[:3]
    assert all(part in r.details.lower() for r in after), [r.details for r in after][:3]
    served = [r for r in records if r.started > answering and r.rpc in need_it and r.code == grpc.StatusCode.OK]
    assert served, f"not served again within {RECOVERY} s of the {part} answering"
    recovered = max(min(r.started + r.seconds for r in served if r.rpc == rpc) for rpc in need_it) - answering
    assert recovered < RECOVERY
    return fast[0].started - began, max(r.seconds for r in after), recovered


async def test_a_killed_triton_fails_searches_fast_while_product_reads_and_cached_answers_go_on(
    fleet: Fleet, catalog: bytes
) -> None:
    async def kill_and_restart() -> float:
        fleet.triton.kill()
        await asyncio.sleep(3.0)
        fleet.triton.start()
        await asyncio.to_thread(fleet.triton.wait_ready, 120)
        return time.monotonic()

    records, began, answering, health_seen = await _under_load(fleet, catalog, kill_and_restart)
    detected, slowest, recovered = _check(records, began, answering, {"search"}, "triton")
    assert set(health_seen) == {health_pb2.HealthCheckResponse.SERVING}, "the gateway left SERVING"
    print(
        f"triton SIGKILL: fast failures {detected:.1f} s after the kill (slowest {slowest * 1000:.0f} ms), "
        f"served again {recovered:.1f} s after Triton was ready"
    )


async def test_a_killed_embedder_fails_searches_fast_while_product_reads_and_cached_answers_go_on(
    fleet: Fleet, catalog: bytes
) -> None:
    async def kill_and_restart() -> float:
        fleet.embedder.kill()
        await asyncio.sleep(3.0)
        await fleet.embedder.start()
        return time.monotonic()

    records, began, answering, health_seen = await _under_load(fleet, catalog, kill_and_restart)
    detected, slowest, recovered = _check(records, began, answering, {"search"}, "embedder")
    assert set(health_seen) == {health_pb2.HealthCheckResponse.SERVING}, "the gateway left SERVING"
    print(
        f"embedder SIGKILL: fast failures {detected:.1f} s after the kill (slowest {slowest * 1000:.0f} ms), "
        f"served again {recovered:.1f} s after it was SERVING"
    )


async def test_a_killed_retriever_fails_what_needs_it_fast_while_cached_answers_go_on(
    fleet: Fleet, catalog: bytes
) -> None:
    async def kill_and_restart() -> float:
        fleet.retriever.kill()
        await asyncio.sleep(3.0)
        await fleet.retriever.start()
        return time.monotonic()

    records, began, answering, health_seen = await _under_load(fleet, catalog, kill_and_restart)
    detected, slowest, recovered = _check(records, began, answering, {"search", "get"}, "retriever")
    # Without its catalog store the gateway cannot answer what is not cached: it says so.
    assert health_pb2.HealthCheckResponse.NOT_SERVING in health_seen
    assert health_seen[-1] == health_pb2.HealthCheckResponse.SERVING
    print(
        f"retriever SIGKILL: fast failures {detected:.1f} s after the kill (slowest {slowest * 1000:.0f} ms), "
        f"served again {recovered:.1f} s after it was SERVING"
    )
