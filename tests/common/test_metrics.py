"""Every service's /metrics: RPC durations by method and status, counted exactly, and SERVING."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import open_channel, product_input, read_rows

from imagesearch.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="session")


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int | str) -> Samples:
    url = port if isinstance(port, str) else f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
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


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over every series whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, have), value in samples.items() if sample == name and wanted <= have)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


async def test_an_ingest_and_a_search_are_counted_alike_on_both_sides_of_every_hop(
    fleet: Any, dev_set: Path, triton_server: Any
) -> None:
    """What the gateway says it sent is what the embedder and retriever say they answered; the
    engines' calls are timed by operation; ingest outcomes and refused images by reason."""
    servers = {"gateway": fleet.gateway, "embedder": fleet.embedder, "retriever": fleet.retriever}

    async def everything() -> dict[str, Samples]:
        scraped = {name: await asyncio.to_thread(scrape, server.metrics.port) for name, server in servers.items()}
        scraped["triton"] = await asyncio.to_thread(scrape, triton_server.metrics_url)
        return scraped

    rows = read_rows(dev_set / "catalog.csv")
    images = [(dev_set / rows[i]["image"]).read_bytes() for i in (5, 50)]
    catalog = f"metrics_{uuid.uuid4().hex[:8]}"
    before = await everything()
    async with open_channel(fleet.gateway.address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        reply = await stub.UpsertProducts(
            search_pb2.UpsertProductsRequest(
                catalog=catalog,
                products=[product_input("good", [images[0]]), product_input("bad", [images[1], b"not an image"])],
            ),
            timeout=60,
        )
        assert [r.ok for r in reply.results] == [True, False]
        found = await stub.Search(search_pb2.SearchRequest(catalog=catalog, image=images[0], top_k=1), timeout=30)
        assert found.hits[0].product_id == "good"
        await stub.GetProduct(search_pb2.GetProductRequest(catalog=catalog, product_id="good"), timeout=30)
        after = await everything()

        # Client side (the gateway) and server side agree, call for call, method by method.
        g, e, r = after["gateway"], after["embedder"], after["retriever"]
        for service, server_side in (
            ("imagesearch.v1.EmbedderService", "embedder"),
            ("imagesearch.v1.RetrieverService", "retriever"),
        ):
            methods = {
                dict(labels)["rpc_method"]
                for name, labels in g
                if name == "rpc_client_duration_seconds_count" and dict(labels)["rpc_service"] == service
            }
            assert methods, f"no client-side series for {service}"
            for method in methods - {"GetModelInfo"}:  # also called in the background, by health checks
                sent = grew(
                    before["gateway"],
                    g,
                    "rpc_client_duration_seconds_count",
                    rpc_service=service,
                    rpc_method=method,
                    rpc_grpc_status_code="OK",
                )
                answered = grew(
                    before[server_side],
                    after[server_side],
                    "rpc_server_duration_seconds_count",
                    rpc_service=service,
                    rpc_method=method,
                    rpc_grpc_status_code="OK",
                )
                assert sent == answered, (service, method, sent, answered)
        assert grew(before["embedder"], e, "rpc_server_duration_seconds_count", rpc_method="Embed") >= 2

        # The engines' calls, by operation.
        infers = grew(
            before["embedder"],
            e,
            "imagesearch_dependency_duration_seconds_count",
            dependency="triton",
            operation="infer",
            outcome="ok",
        )
        # (Triton's nv_inference_request_success, as prometheus_client's parser names a counter.)
        triton_said = grew(before["triton"], after["triton"], "nv_inference_request_success_total")
        assert 2 <= infers <= triton_said  # Triton also answers the health probe's inferences
        assert (
            grew(
                before["retriever"],
                r,
                "imagesearch_dependency_duration_seconds_count",
                dependency="milvus",
                operation="search",
                outcome="ok",
            )
            >= 1
        )
        assert (
            grew(
                before["retriever"],
                r,
                "imagesearch_dependency_duration_seconds_count",
                dependency="milvus",
                operation="insert",
                outcome="ok",
            )
            >= 2
        )  # rows, then heads
        assert (
            grew(
                before["gateway"],
                g,
                "imagesearch_dependency_duration_seconds_count",
                dependency="redis",
                operation="get",
            )
            >= 1
        )

        # Ingest outcomes, and the one refused image by its reason, on both sides.
        assert grew(before["gateway"], g, "imagesearch_ingest_products_total", outcome="ok") == 1
        assert grew(before["gateway"], g, "imagesearch_ingest_products_total", outcome="failed") == 1
        reasons = {dict(labels)["reason"] for name, labels in g if name == "imagesearch_ingest_image_failures_total"}
        refused = {
            reason
            for reason in reasons
            if grew(before["gateway"], g, "imagesearch_ingest_image_failures_total", reason=reason)
        }
        assert len(refused) == 1
        # The embedder counts each image it is sent: the gateway sends it twice (as sent, and trimmed).
        assert grew(before["embedder"], e, "imagesearch_image_failures_total", reason=refused.pop()) == 2

        # What is served: the model, the catalog's size (counted every second in this fleet).
        served = fleet.embedder._backend.triton.served
        assert e[("imagesearch_model_info", frozenset({("model", served.name), ("version", served.version)}))] == 1.0
        assert e[("imagesearch_decode_in_flight", frozenset())] == 0.0
        assert total(e, "imagesearch_admission_refused_total") == 0
        products = (
            "imagesearch_catalog_products",
            frozenset({("catalog", catalog), ("model", f"{served.name}:{served.version}")}),
        )
        deadline = time.monotonic() + 10
        while (r := await asyncio.to_thread(scrape, fleet.retriever.metrics.port)).get(products) != 1.0:
            assert time.monotonic() < deadline, [k for k in r if k[0] == "imagesearch_catalog_products"]
            await asyncio.sleep(0.3)
        await stub.DeleteCatalog(search_pb2.DeleteCatalogRequest(catalog=catalog), timeout=30)


async def test_an_observation_inside_a_sampled_trace_carries_its_trace_id_as_an_exemplar() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

    from imagesearch.common.metrics import ServiceMetrics

    metrics = ServiceMetrics("test")
    redis = metrics.dependency("redis")
    with TracerProvider().get_tracer("test").start_as_current_span("Search") as span, redis.timed("get"):
        pass
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert f'trace_id="{trace_id}"' in generate_openmetrics(metrics.registry).decode()  # exemplars: OpenMetrics only
    assert b"trace_id" not in generate_latest(metrics.registry)
