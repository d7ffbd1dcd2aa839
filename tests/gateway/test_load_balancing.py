"""The gateway spreads its calls over every embedder its target names, and keeps serving when one dies.

Two embedder processes on the session's Triton sit behind one multi-address target (what a
`dns:///` name on a headless Service resolves to in Kubernetes); a gateway in this process searches
through them. Each embedder's own Prometheus endpoint says how many Embed calls it served. While
searches keep coming, one embedder is SIGKILLed: the others take its share and no caller sees an
error (the searches that were on it are retried on the other, imagesearch.common.balancing). When
it is started again on its address, it gets traffic again within the reconnect back-off
(imagesearch.common.keepalive.RECONNECT_MAX_MS), and still nobody sees an error while it starts.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from support import DEMO_IMAGES, ServiceProcess, open_channel, product_input

from imagesearch.common import keepalive
from imagesearch.stack.ports import free_ports
from imagesearch.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="session")

SEARCHES_PER_SECOND = 8
CALL_DEADLINE = 10.0
# Served by the restarted embedder within this long of it being SERVING: the gateway's channel
# retries the connection at most every RECONNECT_MAX_MS; the rest is margin for a busy machine.
BACK_IN_TRAFFIC_SECONDS = keepalive.RECONNECT_MAX_MS / 1000 + 3.0


def embed_calls(metrics_port: int) -> int:
    """Embed calls the embedder has finished, whatever their status, from its own /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return round(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "rpc_server_duration_seconds_count" and sample.labels.get("rpc_method") == "Embed"
        )
    )


@dataclass
class Embedder:
    process: ServiceProcess
    metrics_port: int

    def calls(self) -> int:
        return embed_calls(self.metrics_port)


@dataclass
class Outcome:
    started: float
    code: grpc.StatusCode
    details: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def embedders(triton_server: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[Embedder]]:
    # Metrics on ports of our choosing (not 0, a free one it picks): read while it runs, and
    # again on the same port after a restart.
    pair = [
        Embedder(
            ServiceProcess(
                "embedder",
                {"TRITON_URL": triton_server.grpc_url, "EMBEDDER_METRICS_PORT": str(port)},
                tmp_path_factory.mktemp("balanced-embedder"),
            ),
            port,
        )
        for port in free_ports(2)
    ]
    await asyncio.gather(*(e.process.start() for e in pair))
    try:
        yield pair
    finally:
        await asyncio.gather(*(e.process.__aexit__() for e in pair))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(
    fleet: Any, embedders: list[Embedder]
) -> AsyncIterator[tuple[search_pb2_grpc.SearchServiceStub, str]]:
    """A gateway whose embedder target lists both; a catalog of three products; the query photo."""
    target = "ipv4:" + ",".join(f"127.0.0.1:{e.process.port}" for e in embedders)
    server, _ = await fleet.start_gateway(embedder_addr=target)
    catalog = f"balanced_{uuid.uuid4().hex[:8]}"
    try:
        async with open_channel(server.address) as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            images = [path.read_bytes() for path in DEMO_IMAGES[:3]]
            products = [product_input(f"b-{i}", [image]) for i, image in enumerate(images)]
            await stub.UpsertProducts(search_pb2.UpsertProductsRequest(catalog=catalog, products=products), timeout=60)
            yield stub, catalog
            await stub.DeleteCatalog(search_pb2.DeleteCatalogRequest(catalog=catalog), timeout=30)
    finally:
        await server.stop(1)


async def _searches_until(
    stub: search_pb2_grpc.SearchServiceStub, catalog: str, query: bytes, done: asyncio.Event
) -> list[Outcome]:
    """Uncached searches started on time (whether earlier ones answered or not) until `done`."""
    outcomes: list[Outcome] = []

    async def one() -> None:
        started = time.monotonic()
        try:
            reply = await stub.Search(
                search_pb2.SearchRequest(catalog=catalog, image=query, top_k=3, skip_cache=True),
                timeout=CALL_DEADLINE,
            )
            assert reply.hits
            outcomes.append(Outcome(started, grpc.StatusCode.OK, ""))
        except grpc.aio.AioRpcError as err:
            outcomes.append(Outcome(started, err.code(), err.details() or ""))

    tasks = []
    while not done.is_set():
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(1 / SEARCHES_PER_SECOND)
    await asyncio.gather(*tasks)
    return outcomes


async def _calls(embedders: list[Embedder]) -> list[int]:
    return list(await asyncio.gather(*(asyncio.to_thread(e.calls) for e in embedders)))


async def _wait_for(condition: Any, timeout: float) -> float:
    """Poll `condition()` (async) until true; how long it took. Fails after `timeout`."""
    began = time.monotonic()
    while not await condition():
        assert time.monotonic() - began < timeout, "timed out"
        await asyncio.sleep(0.2)
    return time.monotonic() - began


async def test_searches_spread_over_both_embedders_and_survive_one_killed_and_restarted(
    gateway: tuple[search_pb2_grpc.SearchServiceStub, str], embedders: list[Embedder]
) -> None:
    stub, catalog = gateway
    query = DEMO_IMAGES[0].read_bytes()
    first, second = embedders
    done = asyncio.Event()
    load = asyncio.create_task(_searches_until(stub, catalog, query, done))
    try:
        # Spread: both serve a fair share of the searches (round_robin alternates).
        before = await _calls(embedders)
        await asyncio.sleep(3.0)
        after = await _calls(embedders)
        shares = [b - a for a, b in zip(before, after, strict=True)]
        assert min(shares) >= 0.3 * sum(shares) > 0, shares

        # One killed: the other takes every search.
        first.process.kill()
        killed_at = time.monotonic()
        alone_from = (await _calls([second]))[0]
        await asyncio.sleep(3.0)
        alone = (await _calls([second]))[0] - alone_from
        assert alone >= 3.0 * SEARCHES_PER_SECOND * 0.5, f"the survivor served {alone} searches in 3 s"

        # Back on its address: it gets searches again, soon after it is SERVING.
        await first.process.start()
        serving_at = time.monotonic()
        back_after = await _wait_for(lambda: _first_served(first), BACK_IN_TRAFFIC_SECONDS)
        await asyncio.sleep(1.0)
    finally:
        done.set()
        outcomes = await load
    failed = [o for o in outcomes if o.code != grpc.StatusCode.OK]
    assert not failed, (
        f"{len(failed)} of {len(outcomes)} searches failed: {[(o.code.name, o.details) for o in failed[:3]]}"
    )
    during = [o for o in outcomes if killed_at <= o.started < serving_at]
    assert during, "no search ran while an embedder was down"
    print(
        f"{len(outcomes)} searches, none failed: shares {shares} over 3 s; the survivor alone served {alone} "
        f"in 3 s; {len(during)} searches while one was down; the restarted one served again "
        f"{back_after:.1f} s after it was SERVING"
    )


async def _first_served(embedder: Embedder) -> bool:
    return (await _calls([embedder]))[0] > 0
