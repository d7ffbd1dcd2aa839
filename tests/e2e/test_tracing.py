"""One Search is one trace across gateway -> embedder -> retriever, with the dependency calls inside."""

from __future__ import annotations

import pytest
from support import read_rows

from imagesearch.v1 import search_pb2

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_search_is_one_trace_through_every_hop(gateway, span_exporter, dev_set) -> None:
    image = (dev_set / read_rows(dev_set / "catalog.csv")[70]["image"]).read_bytes()
    span_exporter.clear()
    await gateway.Search(search_pb2.SearchRequest(image=image, top_k=3))
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
    for dependency, owner in (("redis GET", "gateway"), ("triton.infer", "embedder"), ("milvus.search", "retriever")):
        span = next(s for s in trace if s.name == dependency)
        assert service(span) == owner
        assert root in list(ancestors(span)), f"{dependency} is not inside the Search trace"
