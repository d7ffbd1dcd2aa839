"""The embedder served in-process against a real Triton, reached over real gRPC channels."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from PIL import Image

from imagesearch.common.errors import Unavailable
from imagesearch.common.server import ServiceServer
from imagesearch.common.telemetry import build_tracer_provider
from imagesearch.contracts import model as contract
from imagesearch.imaging.framing import Framing
from imagesearch.stack.ports import free_port
from imagesearch.stack.triton import TritonServer
from imagesearch.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc
from imagesearch_embedder.app import build_server
from imagesearch_embedder.settings import EmbedderSettings
from imagesearch_embedder.triton import TritonEmbedder, TritonOptions

REPO = Path(__file__).resolve().parents[2]
MODEL_ONNX = contract.model_dir(REPO / "model_repo") / contract.BASE_VERSION / contract.MODEL_FILE
SERVICE = "imagesearch.v1.EmbedderService"
R = common_pb2.ImageErrorReason
_NO_OTEL_ENV = {"OTEL_SDK_DISABLED": "false"}  # the developer's OTEL_* settings must not leak in


def settings_for(triton: TritonServer, **env: str) -> EmbedderSettings:
    return EmbedderSettings.from_env(
        {
            "EMBEDDER_HOST": "127.0.0.1",
            "EMBEDDER_PORT": "0",
            "EMBEDDER_METRICS_PORT": "0",
            "TRITON_URL": triton.grpc_url,
            **env,
        }
    )


def open_channel(address: str) -> grpc.aio.Channel:
    big = 96 * 1024 * 1024  # larger than the server's cap, so the server is the one that refuses
    return grpc.aio.insecure_channel(
        address, options=[("grpc.max_send_message_length", big), ("grpc.max_receive_message_length", big)]
    )


async def health(channel: grpc.aio.Channel, service: str = "") -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return reply.status


def jpeg(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


def vector(result: embedder_pb2.EmbedResult) -> np.ndarray:
    assert result.WhichOneof("result") == "embedding", result
    return np.asarray(result.embedding.values, dtype=np.float32)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def embedder(triton_server: TritonServer, spans: InMemorySpanExporter) -> AsyncIterator[ServiceServer]:
    provider = build_tracer_provider("embedder", extra_processors=(SimpleSpanProcessor(spans),), environ=_NO_OTEL_ENV)
    server = build_server(settings_for(triton_server), provider)
    await server.start()
    try:
        await server.wait_until_serving(timeout=60)
        yield server
    finally:
        await server.stop(1)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def channel(embedder: ServiceServer) -> AsyncIterator[grpc.aio.Channel]:
    async with open_channel(embedder.address) as ch:
        yield ch


@pytest.fixture(scope="session")
def stub(channel: grpc.aio.Channel) -> embedder_pb2_grpc.EmbedderServiceStub:
    return embedder_pb2_grpc.EmbedderServiceStub(channel)


@pytest.fixture(scope="session")
def catalog_images(dev_set: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((dev_set / "catalog").glob("*.jpg"))[:6]]


@pytest.fixture(scope="session")
def onnx_embed():  # type: ignore[no-untyped-def]
    """The same model run directly by onnxruntime: the reference Triton must agree with."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(MODEL_ONNX), providers=["CPUExecutionProvider"])
    return lambda batch: session.run(["EMBEDDING"], {"IMAGE": batch})[0]


# --------------------------------------------------------------------------- serving


async def test_health_is_serving_after_connect(channel: grpc.aio.Channel) -> None:
    assert await health(channel) == health_pb2.HealthCheckResponse.SERVING
    assert await health(channel, SERVICE) == health_pb2.HealthCheckResponse.SERVING


async def test_model_info_comes_from_triton(stub: embedder_pb2_grpc.EmbedderServiceStub) -> None:
    info = await stub.GetModelInfo(embedder_pb2.GetModelInfoRequest(), timeout=5)
    # The config declares EMBEDDING [-1]: 1280 is what the probe inference at connect() found.
    assert (info.name, info.version, info.dimension) == ("image_embedding", "2", 1280)
    # Version 2's own calibration, from the config's same_product_calibration_v2 parameter.
    assert info.HasField("same_product_calibration")
    assert (info.same_product_calibration.slope, info.same_product_calibration.intercept) == (32.84, -23.40)


async def test_embeddings_match_onnxruntime_on_the_same_preprocessing(
    stub: embedder_pb2_grpc.EmbedderServiceStub, catalog_images: list[bytes], onnx_embed
) -> None:  # type: ignore[no-untyped-def]
    reply = await stub.Embed(
        embedder_pb2.EmbedRequest(images=[embedder_pb2.EmbedImage(content=c) for c in catalog_images]), timeout=30
    )
    assert len(reply.results) == len(catalog_images)
    assert (reply.model.name, reply.model.dimension) == ("image_embedding", 1280)
    assert reply.model.same_product_calibration.slope == 32.84  # every answer names its model's calibration
    got = np.stack([vector(r) for r in reply.results])
    assert got.shape == (len(catalog_images), 1280)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)

    framing = Framing()  # the embedder's defaults: EMBEDDER_IMAGE_SIZE 256, crop
    expected = onnx_embed(np.stack([framing.plain(c) for c in catalog_images]))
    cosine = np.sum(got * expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() > 0.999, cosine
    # Different products give different vectors (nothing degenerate like all-equal outputs).
    assert float(got[0] @ got[1]) < 0.99


async def test_a_localised_image_also_returns_the_whole_photo_vector(
    stub: embedder_pb2_grpc.EmbedderServiceStub, catalog_images: list[bytes]
) -> None:
    plain = embedder_pb2.EmbedImage(content=catalog_images[0])
    located = embedder_pb2.EmbedImage(content=catalog_images[0], localize=True)
    reply = await stub.Embed(embedder_pb2.EmbedRequest(images=[plain, located]), timeout=30)
    assert not reply.results[0].HasField("whole_image")  # only the localisation pass makes one
    whole = np.asarray(reply.results[1].whole_image.values)
    assert whole.shape == (1280,) and np.linalg.norm(whole) == pytest.approx(1.0, abs=1e-4)
    # ... and the photo's most conspicuous part, a second guess at the product (the object on white).
    assert not reply.results[0].HasField("popout_box") and reply.results[1].HasField("popout_box")
    popout = reply.results[1].popout_box
    assert 0 <= popout.x_min < popout.x_max <= 1 and 0 <= popout.y_min < popout.y_max <= 1


async def test_region_changes_the_embedding(
    stub: embedder_pb2_grpc.EmbedderServiceStub, catalog_images: list[bytes]
) -> None:
    whole = embedder_pb2.EmbedImage(content=catalog_images[0])
    corner = embedder_pb2.EmbedImage(
        content=catalog_images[0], region=common_pb2.BoundingBox(x_min=0, y_min=0, x_max=0.3, y_max=0.3)
    )
    reply = await stub.Embed(embedder_pb2.EmbedRequest(images=[whole, corner, whole]), timeout=30)
    a, b, c = (vector(r) for r in reply.results)
    assert float(a @ c) > 0.9999 and float(a @ b) < 0.99


async def test_a_region_localised_inside_returns_its_crop_its_own_vector_and_a_box_within_it(
    stub: embedder_pb2_grpc.EmbedderServiceStub, catalog_images: list[bytes]
) -> None:
    """The zoomed look the gateway takes at an unconvincing photo's corners (`localize_in_region`)."""
    region = common_pb2.BoundingBox(x_min=0.2, y_min=0.1, x_max=0.9, y_max=0.8)
    zoomed = embedder_pb2.EmbedImage(content=catalog_images[0], region=region, localize_in_region=True)
    reply = await stub.Embed(embedder_pb2.EmbedRequest(images=[zoomed]), timeout=30)
    [result] = reply.results
    assert result.HasField("whole_image") and result.HasField("box")
    box = result.box
    assert (
        region.x_min <= box.x_min < box.x_max <= region.x_max and region.y_min <= box.y_min < box.y_max <= region.y_max
    )
    assert np.linalg.norm(vector(result)) == pytest.approx(1.0, abs=1e-4)


async def test_regions_of_one_photo_can_send_it_once(
    stub: embedder_pb2_grpc.EmbedderServiceStub, catalog_images: list[bytes]
) -> None:
    """`same_content_as`: the zoom tiles' four regions travel as one copy of the photo, with the same
    answers as four copies; a reference to a later image, or beside content, fails the request."""
    left = common_pb2.BoundingBox(x_min=0, y_min=0, x_max=0.6, y_max=1)
    right = common_pb2.BoundingBox(x_min=0.4, y_min=0, x_max=1, y_max=1)
    photo = catalog_images[2]

    def tile(region: common_pb2.BoundingBox, **source: object) -> embedder_pb2.EmbedImage:
        return embedder_pb2.EmbedImage(region=region, localize_in_region=True, **source)  # type: ignore[arg-type]

    copies = [tile(left, content=photo), tile(right, content=photo)]
    once = [tile(left, content=photo), tile(right, same_content_as=0)]
    a, b = [await stub.Embed(embedder_pb2.EmbedRequest(images=images), timeout=30) for images in (copies, once)]
    for sent_twice, sent_once in zip(a.results, b.results):
        np.testing.assert_allclose(vector(sent_twice), vector(sent_once), atol=1e-6)
        assert sent_twice.box == sent_once.box
    for images, says in (
        ([tile(left, same_content_as=1), tile(right, content=photo)], "must name an earlier image"),
        ([tile(left, content=photo), tile(right, content=photo, same_content_as=0)], "both content and"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Embed(embedder_pb2.EmbedRequest(images=images), timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and says in info.value.details()


async def test_one_bad_image_does_not_fail_the_batch(
    stub: embedder_pb2_grpc.EmbedderServiceStub, catalog_images: list[bytes]
) -> None:
    good = catalog_images[1]
    images = [
        embedder_pb2.EmbedImage(content=good),
        embedder_pb2.EmbedImage(content=b""),
        embedder_pb2.EmbedImage(content=b"GIF89a" + bytes(64)),
        embedder_pb2.EmbedImage(content=good[: len(good) // 2]),
        embedder_pb2.EmbedImage(content=good, region=common_pb2.BoundingBox(x_min=0.5, y_min=0, x_max=0.2, y_max=1)),
        embedder_pb2.EmbedImage(content=good),
    ]
    reply = await stub.Embed(embedder_pb2.EmbedRequest(images=images), timeout=30)
    kinds = [r.WhichOneof("result") for r in reply.results]
    assert kinds == ["embedding", "error", "error", "error", "error", "embedding"]
    reasons = [r.error.reason for r in reply.results[1:5]]
    assert reasons == [
        R.IMAGE_ERROR_REASON_EMPTY,
        R.IMAGE_ERROR_REASON_UNSUPPORTED_FORMAT,
        R.IMAGE_ERROR_REASON_CORRUPT,
        R.IMAGE_ERROR_REASON_BAD_REGION,
    ]
    assert "GIF is not accepted" in reply.results[2].error.message
    assert "x_min < x_max" in reply.results[4].error.message
    np.testing.assert_allclose(vector(reply.results[0]), vector(reply.results[5]), atol=1e-6)


async def test_empty_request_is_invalid(stub: embedder_pb2_grpc.EmbedderServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Embed(embedder_pb2.EmbedRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no images" in info.value.details()


async def test_too_many_images_is_invalid(stub: embedder_pb2_grpc.EmbedderServiceStub) -> None:
    images = [embedder_pb2.EmbedImage(content=jpeg())] * 65
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Embed(embedder_pb2.EmbedRequest(images=images), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        info.value.details() == "the request has 65 images; the limit is 64 per request, split it into smaller batches"
    )


async def test_a_full_batch_larger_than_tritons_max_batch_is_split(stub: embedder_pb2_grpc.EmbedderServiceStub) -> None:
    colours = [(i * 4, 255 - i * 4, 128) for i in range(40)]  # 40 > max_batch_size 32: two Triton calls
    reply = await stub.Embed(
        embedder_pb2.EmbedRequest(images=[embedder_pb2.EmbedImage(content=jpeg(c)) for c in colours]), timeout=60
    )
    got = np.stack([vector(r) for r in reply.results])
    assert got.shape == (40, 1280)
    # Order is kept: the same image sent alone gives the same vector as in its slot.
    alone = await stub.Embed(
        embedder_pb2.EmbedRequest(images=[embedder_pb2.EmbedImage(content=jpeg(colours[35]))]), timeout=30
    )
    np.testing.assert_allclose(vector(alone.results[0]), got[35], atol=1e-5)


async def test_hostile_inputs_leave_the_server_healthy(
    stub: embedder_pb2_grpc.EmbedderServiceStub, channel: grpc.aio.Channel, catalog_images: list[bytes]
) -> None:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    rng = np.random.default_rng(7)
    hostile = [
        bomb,
        rng.bytes(5000),
        b"\xff\xd8\xff" + rng.bytes(5000),
        b"\x89PNG\r\n\x1a\n" + rng.bytes(100),
        b"RIFF\x00\x00\x00\x00WEBPVP8X" + rng.bytes(30),
        catalog_images[2][:200],
    ]
    requests = [embedder_pb2.EmbedRequest(images=[embedder_pb2.EmbedImage(content=h) for h in hostile])] * 8
    replies = await asyncio.gather(*(stub.Embed(r, timeout=30) for r in requests))
    for reply in replies:
        assert all(r.WhichOneof("result") == "error" for r in reply.results)
        assert reply.results[0].error.reason == R.IMAGE_ERROR_REASON_BAD_DIMENSIONS
    assert await health(channel) == health_pb2.HealthCheckResponse.SERVING
    reply = await stub.Embed(
        embedder_pb2.EmbedRequest(images=[embedder_pb2.EmbedImage(content=catalog_images[2])]), timeout=30
    )
    assert vector(reply.results[0]).shape == (1280,)


async def test_spans_show_triton_inference_under_the_server_span(
    stub: embedder_pb2_grpc.EmbedderServiceStub, spans: InMemorySpanExporter, catalog_images: list[bytes]
) -> None:
    spans.clear()
    await stub.Embed(
        embedder_pb2.EmbedRequest(images=[embedder_pb2.EmbedImage(content=c) for c in catalog_images[:2]]), timeout=30
    )
    finished = spans.get_finished_spans()
    server = [s for s in finished if s.kind == SpanKind.SERVER and s.name.endswith("EmbedderService/Embed")]
    assert len(server) == 1, [s.name for s in finished]
    root = server[0]
    children = {s.name: s for s in finished if s.parent is not None and s.parent.span_id == root.context.span_id}
    assert {"embedder.decode", "triton.infer"} <= set(children), [s.name for s in finished]
    infer = children["triton.infer"]
    assert infer.context.trace_id == root.context.trace_id
    assert infer.attributes["triton.model.name"] == "image_embedding"
    assert infer.attributes["triton.model.version"] == "2"
    assert infer.attributes["triton.batch_size"] == 2
    assert children["embedder.decode"].attributes["images"] == 2


# --------------------------------------------------------------------------- other configurations


async def test_message_over_the_cap_is_resource_exhausted(triton_server: TritonServer) -> None:
    provider = build_tracer_provider("embedder", environ=_NO_OTEL_ENV)
    server = build_server(settings_for(triton_server, EMBEDDER_MAX_MESSAGE_BYTES=str(1024 * 1024)), provider)
    await server.start()
    try:
        await server.wait_until_serving(timeout=30)
        async with open_channel(server.address) as ch:
            big = embedder_pb2.EmbedImage(content=b"\xff\xd8\xff" + bytes(2 * 1024 * 1024))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await embedder_pb2_grpc.EmbedderServiceStub(ch).Embed(
                    embedder_pb2.EmbedRequest(images=[big]), timeout=10
                )
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert await health(ch) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)


async def test_wrong_model_name_stays_not_serving(triton_server: TritonServer) -> None:
    provider = build_tracer_provider("embedder", environ=_NO_OTEL_ENV)
    server = build_server(settings_for(triton_server, TRITON_MODEL="no_such_model"), provider)
    await server.start()
    try:
        with pytest.raises(asyncio.TimeoutError):
            await server.wait_until_serving(timeout=1.5)  # at least one failed connect() in between
        async with open_channel(server.address) as ch:
            assert await health(ch) == health_pb2.HealthCheckResponse.NOT_SERVING
            assert await health(ch, SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await embedder_pb2_grpc.EmbedderServiceStub(ch).Embed(
                    embedder_pb2.EmbedRequest(images=[embedder_pb2.EmbedImage(content=jpeg())]), timeout=5
                )
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "no_such_model" in info.value.details()
    finally:
        await server.stop(0)


async def test_adapter_reports_an_unknown_model_and_a_dead_triton(triton_server: TritonServer) -> None:
    missing = TritonEmbedder(TritonOptions(triton_server.grpc_url, "no_such_model", "", 5), TracerProvider())
    with pytest.raises(Unavailable, match=r"no ready model 'no_such_model'|does not serve model 'no_such_model'"):
        await missing.connect()
    pinned = TritonEmbedder(TritonOptions(triton_server.grpc_url, "image_embedding", "9", 5), TracerProvider())
    with pytest.raises(Unavailable, match="version 9"):
        await pinned.connect()
    dead = TritonEmbedder(TritonOptions(f"127.0.0.1:{free_port()}", "image_embedding", "", 2), TracerProvider())
    with pytest.raises(Unavailable, match=r"triton unavailable at 127\.0\.0\.1:\d+"):
        await dead.connect()
