"""The gateway's gRPC adapters, against stub replies: what crosses the wire becomes plain types, or a precise error."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from gateway.fakes import MODEL
from imagesearch.common import convert
from imagesearch.common.errors import DomainError, FailedPrecondition, Unavailable
from imagesearch.common.types import ImageErrorReason, Region
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.v1 import common_pb2, embedder_pb2
from imagesearch_gateway.clients import EmbedderClient
from imagesearch_gateway.ports import ImageFault


def test_model_info_carries_the_calibration_beside_the_models_identity() -> None:
    with_fit = convert.model_to_pb(MODEL, ScoreCalibration(12.5, -6.0))
    assert (with_fit.same_product_calibration.slope, with_fit.same_product_calibration.intercept) == (12.5, -6.0)
    assert convert.calibration_from_pb(with_fit) == ScoreCalibration(12.5, -6.0)
    assert convert.model_from_pb(with_fit) == MODEL  # the identity (a cache and collection key) ignores it
    without = convert.model_to_pb(MODEL)
    assert not without.HasField("same_product_calibration") and convert.calibration_from_pb(without) is None


class FakeStub:
    def __init__(self, info: common_pb2.ModelInfo, embed: embedder_pb2.EmbedResponse | None = None) -> None:
        self.info, self.reply = info, embed
        self.sent: embedder_pb2.EmbedRequest | None = None

    async def GetModelInfo(self, request: Any, timeout: float) -> common_pb2.ModelInfo:
        return self.info

    async def Embed(self, request: Any, timeout: float) -> embedder_pb2.EmbedResponse:
        assert self.reply is not None
        self.sent = request
        return self.reply


async def client_with(stub: FakeStub) -> EmbedderClient:
    client = EmbedderClient("127.0.0.1:1", TracerProvider(), 1.0, 1024 * 1024)
    client.open()
    client._stub = stub  # type: ignore[assignment]
    return client


async def test_before_open_every_call_is_unavailable() -> None:
    client = EmbedderClient("127.0.0.1:1", TracerProvider(), 1.0, 1024 * 1024)
    with pytest.raises(Unavailable, match=r"not connected to the embedder at 127\.0\.0\.1:1 yet"):
        await client.model_info()


async def test_the_embedder_client_returns_the_models_calibration_and_refuses_an_unusable_one() -> None:
    client = await client_with(FakeStub(convert.model_to_pb(MODEL, ScoreCalibration(12.5, -6.0))))
    try:
        assert await client.model_info() == (MODEL, ScoreCalibration(12.5, -6.0))
        broken = convert.model_to_pb(MODEL)
        broken.same_product_calibration.slope = 0.0  # set, but not a usable fit
        client._stub = FakeStub(broken)  # type: ignore[assignment]
        with pytest.raises(
            FailedPrecondition,
            match=r"embedder reports an unusable same-product calibration for "
            r"model image_embedding v3: needs a finite slope > 0",
        ):
            await client.model_info()
    finally:
        await client.close()


def embed_reply(*results: embedder_pb2.EmbedResult) -> embedder_pb2.EmbedResponse:
    return embedder_pb2.EmbedResponse(results=list(results), model=convert.model_to_pb(MODEL, ScoreCalibration(2, 1)))


async def test_embeddings_name_their_model_and_faults_their_reason() -> None:
    reply = embed_reply(
        embedder_pb2.EmbedResult(
            embedding=embedder_pb2.Embedding(values=[1, 0, 0, 0]),
            whole_image=embedder_pb2.Embedding(values=[0, 1, 0, 0]),
            popout_box=common_pb2.BoundingBox(x_min=0.5, y_min=0.25, x_max=0.75, y_max=0.5),
        ),
        embedder_pb2.EmbedResult(
            error=common_pb2.ImageError(reason=common_pb2.IMAGE_ERROR_REASON_CORRUPT, message="cut")
        ),
    )
    client = await client_with(FakeStub(convert.model_to_pb(MODEL), reply))
    try:
        embeddings = await client.embed([(b"a", None), (b"b", None)], localize=True)
        assert (embeddings.model, embeddings.calibration) == (MODEL, ScoreCalibration(2, 1))
        first, second = embeddings.images
        assert first.vector.tolist() == [1, 0, 0, 0] and first.whole is not None  # type: ignore[union-attr]
        assert first.popout == Region(0.5, 0.25, 0.75, 0.5)
        assert second.vector == ImageFault(ImageErrorReason.CORRUPT, "cut") and second.whole is None
        assert second.popout is None
    finally:
        await client.close()


async def test_regions_of_one_photo_send_its_bytes_once() -> None:
    result = embedder_pb2.EmbedResult(embedding=embedder_pb2.Embedding(values=[1, 0, 0, 0]))
    stub = FakeStub(convert.model_to_pb(MODEL), embed_reply(result, result, result))
    client = await client_with(stub)
    try:
        halves = [Region(0, 0, 0.5, 1), Region(0.5, 0, 1, 1)]
        images = [(b"photo", halves[0]), (b"other", None), (b"photo", halves[1])]
        await client.embed(images, localize_in_region=[True, False, True])
        assert stub.sent is not None
        first, other, second = stub.sent.images
        assert (first.content, other.content, second.content) == (b"photo", b"other", b"")
        assert not first.HasField("same_content_as") and second.same_content_as == 0
        assert second.region.x_min == 0.5 and (first.localize_in_region, other.localize_in_region) == (True, False)
        with pytest.raises(ValueError, match="names 2 images of 3"):
            await client.embed(images, localize_in_region=[True, True])
    finally:
        await client.close()


async def test_a_vector_that_does_not_fit_its_label_or_a_missing_result_is_a_server_error() -> None:
    wrong = embed_reply(embedder_pb2.EmbedResult(embedding=embedder_pb2.Embedding(values=[1, 0])))
    client = await client_with(FakeStub(convert.model_to_pb(MODEL), wrong))
    try:
        with pytest.raises(DomainError, match=r"a 2-d vector labelled image_embedding v3 \(4-d\)"):
            await client.embed([(b"a", None)])
        client._stub = FakeStub(convert.model_to_pb(MODEL), embed_reply())  # type: ignore[assignment]
        with pytest.raises(DomainError, match="answered 0 results for 1 images"):
            await client.embed([(b"a", None)])
    finally:
        await client.close()
