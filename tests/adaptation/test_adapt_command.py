"""`imagesearch adapt`: a catalog in, a new version of the Triton model out, served like the base."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import BASE_VERSION, REPO, base_model_repository

from imagesearch.adaptation.graph import append_whitening
from imagesearch.adaptation.whitening import Whitening
from imagesearch.cli.main import main
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.contracts.model import ConfigFile, model_dir

MODEL_DIR = model_dir(REPO / "model_repo")
BASE_ONNX = MODEL_DIR / BASE_VERSION / "model.onnx"
DEMO = REPO / "demo" / "catalog"


def _session(path: Path):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _images(count: int, size: int = 256) -> np.ndarray:
    paths = sorted(DEMO.glob("*.jpg"))[:count]
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size))) for p in paths])


def _mini_catalog(folder: Path, count: int) -> Path:
    csv = folder / "catalog.csv"
    rows = ["product_id,image"] + [f"{p.stem},{p}" for p in sorted(DEMO.glob("*.jpg"))[:count]]
    csv.write_text("\n".join(rows) + "\n")
    return csv


def test_the_adapted_graph_is_the_base_graph_followed_by_the_whitening(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    whitening = Whitening(rng.normal(0, 0.01, 1280).astype(np.float32), rng.normal(0, 1, (1280, 64)).astype(np.float32))
    out = tmp_path / "model.onnx"
    append_whitening(BASE_ONNX, whitening, out, {"imagesearch.test": "yes"})
    images = _images(3)
    base = dict(
        zip(
            ["EMBEDDING", "LOGITS", "SALIENCY"],
            _session(BASE_ONNX).run(["EMBEDDING", "LOGITS", "SALIENCY"], {"IMAGE": images}),
        )
    )
    adapted_session = _session(out)
    embedding, logits, saliency = adapted_session.run(["EMBEDDING", "LOGITS", "SALIENCY"], {"IMAGE": images})
    np.testing.assert_allclose(embedding, whitening.apply(base["EMBEDDING"]), atol=2e-5)
    np.testing.assert_allclose(logits, base["LOGITS"], atol=1e-5)  # localisation and logits are untouched
    np.testing.assert_allclose(saliency, base["SALIENCY"], atol=1e-5)
    assert adapted_session.get_modelmeta().custom_metadata_map["imagesearch.test"] == "yes"
    assert [o.name for o in adapted_session.get_outputs()] == [o.name for o in _session(BASE_ONNX).get_outputs()]


@pytest.fixture(scope="module")
def adapted_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the base model repository with one version adapted to 12 demo products."""
    repo = base_model_repository(tmp_path_factory.mktemp("adapted_repo"))
    catalog = _mini_catalog(tmp_path_factory.mktemp("mini"), 12)
    code = main(
        ["adapt", str(catalog), "--model-repo", str(repo), "--views", "1", "--dimension", "64", "--no-progress"]
    )
    assert code == 0
    return repo


def test_adapt_writes_the_next_version_with_how_it_was_made(adapted_repo: Path) -> None:
    version = adapted_repo / "image_embedding" / "3"
    assert sorted(p.name for p in version.iterdir()) == ["adaptation.json", "model.onnx", "model.py"]
    record = json.loads((version / "adaptation.json").read_text())
    assert record["base_version"] == 2 and record["version"] == 3
    assert record["items"] == 12 and record["views"] == 12
    assert record["options"]["dimension"] == 64
    slope, intercept = record["same_product_calibration"]
    assert slope > 0
    local = ConfigFile.read(model_dir(adapted_repo) / "config.pbtxt")
    gpu = ConfigFile.read(model_dir(adapted_repo) / "configs" / "tensorrt.pbtxt")
    for config in (local, gpu):
        assert config.calibration("3") == ScoreCalibration.parse(f"{slope:.2f},{intercept:.2f}")
        assert config.calibration("2") == ScoreCalibration(32.84, -23.40)  # the base keeps its own
    # The GPU config states the served version's width (its backends check it); the local one is open.
    assert (gpu.embedding_width(), local.embedding_width()) == (64, -1)
    [embedding] = _session(version / "model.onnx").run(["EMBEDDING"], {"IMAGE": _images(1)})
    assert embedding.shape == (1, 64)


def test_adapting_again_builds_on_the_base_not_on_the_adaptation(adapted_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(adapted_repo, repo, symlinks=True)
    catalog = _mini_catalog(tmp_path, 4)
    assert (
        main(
            [
                "adapt",
                str(catalog),
                "--model-repo",
                str(repo),
                "--views",
                "1",
                "--dimension",
                "16",
                "--no-progress",
                "--version",
                "9",
            ]
        )
        == 0
    )
    record = json.loads((repo / "image_embedding" / "9" / "adaptation.json").read_text())
    assert record["base_version"] == 2
    assert not list((repo / "image_embedding").glob(".*partial"))


def test_a_missing_catalog_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = base_model_repository(tmp_path / "repo")
    assert main(["adapt", str(tmp_path / "nope.csv"), "--model-repo", str(repo)]) == 2
    assert "nope.csv: no such file or folder" in capsys.readouterr().err


def test_a_repository_without_a_base_model_says_how_to_build_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "image_embedding").mkdir()
    (tmp_path / "image_embedding" / "config.pbtxt").write_text('name: "image_embedding"\n')
    assert main(["adapt", str(_mini_catalog(tmp_path, 2)), "--model-repo", str(tmp_path)]) == 1
    assert "build the base model first" in capsys.readouterr().err


def test_one_image_is_too_few_to_adapt_to(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = base_model_repository(tmp_path / "repo")
    assert main(["adapt", str(_mini_catalog(tmp_path, 1)), "--model-repo", str(repo), "--no-progress"]) == 1
    assert "need at least 2 catalog images" in capsys.readouterr().err
    assert sorted(p.name for p in (repo / "image_embedding").iterdir()) == ["2", "config.pbtxt", "configs"]


@pytest.fixture(scope="module")
def adapted_triton(adapted_repo: Path, tmp_path_factory: pytest.TempPathFactory):  # -> Iterator[TritonServer]
    from imagesearch.stack.triton import TritonServer

    with TritonServer(model_repository=adapted_repo, runtime_dir=tmp_path_factory.mktemp("adapted_triton")) as server:
        yield server


def test_triton_serves_the_adapted_version_as_the_onnx_file_computes_it(adapted_repo: Path, adapted_triton) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(adapted_triton.grpc_url)
    try:
        assert client.get_model_metadata("image_embedding").versions == ["3"]  # the newest only
        images = _images(2)
        request = grpcclient.InferInput("IMAGE", list(images.shape), "UINT8")
        request.set_data_from_numpy(images)
        served = client.infer("image_embedding", [request]).as_numpy("EMBEDDING")
    finally:
        client.close()
    [expected] = _session(adapted_repo / "image_embedding" / "3" / "model.onnx").run(["EMBEDDING"], {"IMAGE": images})
    assert served.shape == (2, 64)
    np.testing.assert_allclose(served, expected, atol=1e-5)


@pytest.mark.asyncio(loop_scope="session")
async def test_the_embedder_reports_the_adapted_width_and_calibration(adapted_repo: Path, adapted_triton) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from support import open_channel

    from imagesearch.v1 import embedder_pb2, embedder_pb2_grpc
    from imagesearch_embedder.app import build_server
    from imagesearch_embedder.settings import EmbedderSettings

    record = json.loads((adapted_repo / "image_embedding" / "3" / "adaptation.json").read_text())
    slope, intercept = record["same_product_calibration"]
    embedder = build_server(
        EmbedderSettings.from_env(
            {"EMBEDDER_HOST": "127.0.0.1", "EMBEDDER_PORT": "0", "TRITON_URL": adapted_triton.grpc_url}
        ),
        TracerProvider(),
    )
    await embedder.start()
    try:
        await embedder.wait_until_serving(timeout=60)
        async with open_channel(embedder.address) as channel:
            stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
            info = await stub.GetModelInfo(embedder_pb2.GetModelInfoRequest())
            photo = (DEMO / sorted(p.name for p in DEMO.glob("*.jpg"))[0]).read_bytes()
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
