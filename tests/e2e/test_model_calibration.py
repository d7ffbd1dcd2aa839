"""The same-product probability follows the served model version's own calibration.

The session's Triton serves model_repo/'s config, whose `same_product_calibration_v2`
parameter is "32.84,-23.40". A gateway whose SAME_PRODUCT_CALIBRATION fallback says
something else must still score hits with the model's fit.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from support import KEYS_FILE, open_channel, product_input, read_rows

from imagesearch.common.server import ServerOptions, ServiceServer
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.v1 import embedder_pb2, embedder_pb2_grpc, search_pb2, search_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="session")

CATALOG = "model_calibration"
MODEL_SLOPE, MODEL_INTERCEPT = 32.84, -23.40  # model_repo/image_embedding/config.pbtxt, version 2
FALLBACK = "5.00,-1.00"  # deliberately different: it must not be used


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway_with_other_fallback(fleet) -> AsyncIterator[search_pb2_grpc.SearchServiceStub]:  # type: ignore[no-untyped-def]
    from opentelemetry.sdk.trace import TracerProvider

    from imagesearch_gateway.app import GatewayBackend
    from imagesearch_gateway.settings import GatewaySettings

    settings = GatewaySettings(
        host="127.0.0.1",
        port=0,
        embedder_addr=fleet.embedder.address,
        retriever_addr=fleet.retriever.address,
        redis_url=fleet.redis_url,
        calibration=ScoreCalibration.parse(FALLBACK),
        api_keys_file=str(KEYS_FILE),
    )
    server = ServiceServer(
        "gateway",
        GatewayBackend(settings, TracerProvider()),
        ServerOptions(
            host=settings.host, port=0, max_message_bytes=settings.max_message_bytes, connect_retry_seconds=0.2
        ),
        TracerProvider(),
    )
    await server.start()
    try:
        await server.wait_until_serving(timeout=60)
        async with open_channel(server.address) as channel:
            yield search_pb2_grpc.SearchServiceStub(channel)
    finally:
        await server.stop(1)


async def test_the_embedder_reports_the_served_versions_calibration(fleet) -> None:  # type: ignore[no-untyped-def]
    async with open_channel(fleet.embedder.address) as channel:
        info = await embedder_pb2_grpc.EmbedderServiceStub(channel).GetModelInfo(embedder_pb2.GetModelInfoRequest())
    assert (info.version, info.dimension) == ("2", 1280)
    assert (info.same_product_calibration.slope, info.same_product_calibration.intercept) == (
        MODEL_SLOPE,
        MODEL_INTERCEPT,
    )


async def test_hit_probabilities_follow_the_models_calibration_not_the_fallback(
    gateway_with_other_fallback, dev_set
) -> None:  # type: ignore[no-untyped-def]
    gateway = gateway_with_other_fallback
    rows = read_rows(dev_set / "catalog.csv")[30:36]
    images = [(dev_set / row["image"]).read_bytes() for row in rows]
    reply = await gateway.UpsertProducts(
        search_pb2.UpsertProductsRequest(
            catalog=CATALOG, products=[product_input(f"mc-{i}", [image]) for i, image in enumerate(images)]
        )
    )
    assert all(r.ok for r in reply.results), reply
    try:
        found = await gateway.Search(
            search_pb2.SearchRequest(catalog=CATALOG, image=images[2], top_k=6, skip_cache=True)
        )
        assert len(found.hits) == 6 and found.hits[0].product_id == "mc-2"
        for hit in found.hits:
            expected = 1 / (1 + math.exp(-(MODEL_SLOPE * hit.score + MODEL_INTERCEPT)))
            assert hit.same_product_probability == pytest.approx(expected, rel=1e-5, abs=1e-6), hit
        # Not vacuous: the fallback would have given other probabilities.
        fallback = [1 / (1 + math.exp(-(5.0 * hit.score - 1.0))) for hit in found.hits]
        assert max(abs(h.same_product_probability - f) for h, f in zip(found.hits, fallback)) > 0.1
    finally:
        await gateway.DeleteCatalog(search_pb2.DeleteCatalogRequest(catalog=CATALOG))
