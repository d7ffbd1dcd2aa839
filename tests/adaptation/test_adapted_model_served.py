"""An adapted version is served like the base: Triton computes what its ONNX file computes, and the
embedder reports its width and calibration (real Triton)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from support import DEMO_IMAGES, demo_images, onnx_session, open_channel

from imagesearch.stack.triton import TritonServer
from imagesearch.v1 import embedder_pb2, embedder_pb2_grpc
from imagesearch_embedder.app import build_server
from imagesearch_embedder.settings import EmbedderSettings


@pytest.fixture(scope="module")
def adapted_triton(adapted_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with TritonServer(model_repository=adapted_repo, runtime_dir=tmp_path_factory.mktemp("adapted_triton")) as server:
        yield server


def test_triton_serves_the_adapted_version_as_the_onnx_file_computes_it(adapted_repo: Path, adapted_triton) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(adapted_triton.grpc_url)
    try:
        assert client.get_model_metadata("image_embedding").versions == ["3"]  # the newest only
        images = demo_images(2)
        request = grpcclient.InferInput("IMAGE", list(images.shape), "UINT8")
        request.set_data_from_numpy(images)
        served = client.infer("image_embedding", [request]).as_numpy("EMBEDDING")
    finally:
        client.close()
    [expected] = onnx_session(adapted_repo / "image_embedding" / "3" / "model.onnx").run(
        ["EMBEDDING"], {"IMAGE": images}
    )
    assert served.shape == (2, 64)
    np.testing.assert_allclose(served, expected, atol=1e-5)


@pytest.mark.asyncio(loop_scope="session")
async def test_the_embedder_reports_the_adapted_width_and_calibration(adapted_repo: Path, adapted_triton) -> None:
    record = json.loads((adapted_repo / "image_embedding" / "3" / "adaptation.json").read_text())
    slope, intercept = record["same_product_calibration"]
    embedder = build_server(
        EmbedderSettings.from_env(
            {
                "EMBEDDER_HOST": "127.0.0.1",
                "EMBEDDER_PORT": "0",
                "EMBEDDER_METRICS_PORT": "0",
                "TRITON_URL": adapted_triton.grpc_url,
            }
        ),
        TracerProvider(),
    )
    await embedder.start()
    try:
        await embedder.wait_until_serving(timeout=60)
        async with open_channel(embedder.address) as channel:
            stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
            info = await stub.GetModelInfo(embedder_pb2.GetModelInfoRequest())
            photo = DEMO_IMAGES[0].read_bytes()
            reply = await stub.Embed(
                embedder_pb2.EmbedRequest(images=[embedder_pb2.EmbedImage(content=photo, localize=True)])
            )
    finally:
        await embedder.stop(1)
    assert (info.name, info.version, info.dimension) == ("image_embedding", "3", 64)
    assert info.same_product_calibration.slope == pytest.approx(round(slope, 2))
    assert info.same_product_calibration.intercept == pytest.approx(round(intercept, 2))
    [result] = reply.results
    assert len(result.embedding.values) == 64  # the localised two-pass path works on the adapted graph
    assert np.linalg.norm(result.embedding.values) == pytest.approx(1.0, abs=1e-4)
