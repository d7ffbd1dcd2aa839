"""Every service's /metrics: RPC durations by method and status, counted exactly, and SERVING."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import open_channel

from imagesearch.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="session")


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def calls(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], method: str, code: str) -> float:
    labels = frozenset(
        {
            ("rpc_system", "grpc"),
            ("rpc_service", "imagesearch.v1.SearchService"),
            ("rpc_method", method),
            ("rpc_grpc_status_code", code),
        }
    )
    return samples.get(("rpc_server_duration_seconds_count", labels), 0.0)


async def test_rpc_durations_count_every_call_by_method_and_status(fleet: Any) -> None:
    gateway, _ = await fleet.start_gateway()
    try:
        port = gateway.metrics.port
        before = await asyncio.to_thread(scrape, port)
        async with open_channel(gateway.address) as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            for _ in range(3):
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.GetProduct(search_pb2.GetProductRequest(product_id="nope"), timeout=10)
            for _ in range(2):
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.Search(search_pb2.SearchRequest(image=b"not an image"), timeout=10)
        async with open_channel(gateway.address, anonymous=True) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await search_pb2_grpc.SearchServiceStub(channel).GetProduct(
                    search_pb2.GetProductRequest(product_id="nope"), timeout=10
                )
        after = await asyncio.to_thread(scrape, port)
        assert calls(after, "GetProduct", "NOT_FOUND") - calls(before, "GetProduct", "NOT_FOUND") == 3
        assert calls(after, "Search", "INVALID_ARGUMENT") - calls(before, "Search", "INVALID_ARGUMENT") == 2
        assert calls(after, "GetProduct", "UNAUTHENTICATED") - calls(before, "GetProduct", "UNAUTHENTICATED") == 1
        assert after[("imagesearch_serving", frozenset())] == 1.0
        for dependency in ("embedder", "retriever"):  # both answer: their breakers are closed
            assert after[("imagesearch_dependency_up", frozenset({("dependency", dependency)}))] == 1.0
        assert ("imagesearch_cache_lookups_total", frozenset({("outcome", "hit")})) in after
        assert after[("imagesearch_calls_in_flight", frozenset())] == 0.0
        # Buckets resolve the range where searches live.
        bounds = {dict(labels).get("le") for name, labels in after if name == "rpc_server_duration_seconds_bucket"}
        assert {"0.001", "0.005", "0.01", "0.05", "0.1"} <= bounds
    finally:
        await fleet.stop_extra()
