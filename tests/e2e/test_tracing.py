"""One Search is one trace across gateway -> embedder -> retriever, with the dependency calls inside."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from support import open_channel, product_input, read_rows

from imagesearch.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_search_is_one_trace_through_every_hop(gateway, span_exporter, dev_set) -> None:
    image = (dev_set / read_rows(dev_set / "catalog.csv")[70]["image"]).read_bytes()
    # Its own catalog with one product, so the search reaches Milvus whatever ran before.
    await gateway.UpsertProducts(
        search_pb2.UpsertProductsRequest(catalog="traced", products=[product_input("t-1", [image])])
    )
    span_exporter.clear()
    await gateway.Search(search_pb2.SearchRequest(catalog="traced", image=image, top_k=3, skip_cache=True))
    spans = span_exporter.get_finished_spans()
    by_id = {span.context.span_id: span for span in spans}
    root = next(s for s in spans if s.name == "/imagesearch.v1.SearchService/Search" and s.parent is None)
    trace = [s for s in spans if s.context.trace_id == root.context.trace_id]

    def service(span) -> str:  # type: ignore[no-untyped-def]
        return span.resource.attributes["service.name"]

    def ancestors(span):  # type: ignore[no-untyped-def]
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            yield span

    names = {(service(s), s.name) for s in trace}
    assert ("gateway", "/imagesearch.v1.SearchService/Search") in names
    assert ("embedder", "/imagesearch.v1.EmbedderService/Embed") in names
    assert ("retriever", "/imagesearch.v1.RetrieverService/Search") in names
    # The cache's first command reads the catalog's state (skip_cache still does: a write may be landing).
    for dependency, owner in (("redis ", "gateway"), ("triton.infer", "embedder"), ("milvus.search", "retriever")):
        span = next((s for s in trace if s.name.startswith(dependency)), None)
        assert span is not None, (dependency, sorted(n for _, n in names))
        assert service(span) == owner
        assert root in list(ancestors(span)), f"{dependency} is not inside the Search trace"
    await gateway.DeleteCatalog(search_pb2.DeleteCatalogRequest(catalog="traced"))


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def server_span(exporter, name: str):  # type: ignore[no-untyped-def]
    """The one finished span of that name: a server span ends just after its answer has gone out."""
    for _ in range(100):
        found = [s for s in exporter.get_finished_spans() if s.name == name]
        if found:
            [span] = found
            return span
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {name} span")


SENT = (("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01"),)


async def test_a_caller_cannot_join_or_force_the_gateways_traces(gateway, span_exporter) -> None:
    """The public port ignores callers' trace context (GATEWAY_TRUST_TRACE_CONTEXT=false)."""
    span_exporter.clear()
    with pytest.raises(grpc.aio.AioRpcError):  # NOT_FOUND: the span is what matters
        await gateway.GetProduct(search_pb2.GetProductRequest(product_id="nope"), metadata=SENT)
    root = await server_span(span_exporter, "/imagesearch.v1.SearchService/GetProduct")
    assert root.parent is None and f"{root.context.trace_id:032x}" != TRACE_ID


async def test_a_gateway_that_trusts_trace_context_joins_the_callers_trace(fleet, span_exporter) -> None:
    server, _ = await fleet.start_gateway(exporter=span_exporter, trust_trace_context=True)
    try:
        async with open_channel(server.address) as channel:
            span_exporter.clear()
            with pytest.raises(grpc.aio.AioRpcError):
                await search_pb2_grpc.SearchServiceStub(channel).GetProduct(
                    search_pb2.GetProductRequest(product_id="nope"), metadata=SENT
                )
        root = await server_span(span_exporter, "/imagesearch.v1.SearchService/GetProduct")
        assert f"{root.context.trace_id:032x}" == TRACE_ID
    finally:
        await fleet.stop_extra()
