"""The image_embedding model as served by the local Triton (Python backend, onnxruntime, CPU)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from support import BASE_MODEL_FILE, demo_images, ensure_base_model
from tritonclient.utils import InferenceServerException

from imagesearch.contracts import model as contract
from imagesearch.stack.triton import TritonServer, default_triton_env

MODEL = contract.MODEL_NAME
MODEL_FILE = BASE_MODEL_FILE


@pytest.fixture(scope="module")
def server(triton_server: TritonServer) -> TritonServer:
    """The session's Triton: it serves model_repo/'s config and base version."""
    ensure_base_model()
    if not default_triton_env().is_dir():
        pytest.skip(f"no Triton venv at {default_triton_env()} (run scripts/bootstrap.sh)")
    return triton_server


@pytest.fixture(scope="module")
def client(server: TritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    triton = grpcclient.InferenceServerClient(server.grpc_url)
    yield triton
    triton.close()


@pytest.fixture(scope="module")
def session():  # -> onnxruntime.InferenceSession on the same file Triton serves
    import onnxruntime as ort

    return ort.InferenceSession(str(ensure_base_model()), providers=["CPUExecutionProvider"])


def image_input(images: np.ndarray) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("IMAGE", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    return tensor


def test_metadata_and_config(client: grpcclient.InferenceServerClient) -> None:
    meta = client.get_model_metadata(MODEL, as_json=True)
    inputs = [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]]
    assert inputs == [("IMAGE", "UINT8", ["-1", "-1", "-1", "3"])]  # any size: 224 to localise, 256 to embed
    assert sorted((t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]) == [
        ("EMBEDDING", "FP32", ["-1", "-1"]),  # each version has its own width
        ("LOGITS", "FP32", ["-1", "1000"]),
        ("SALIENCY", "FP32", ["-1", "-1", "-1"]),
    ]
    config = client.get_model_config(MODEL, as_json=True)["config"]
    assert config["max_batch_size"] == 32
    assert config["backend"] == "python"
    assert "dynamic_batching" in config


def test_model_runs_on_the_triton_venv_packages(server: TritonServer) -> None:
    """The stub must import numpy/onnxruntime from the Triton venv, not the caller's venv or the system."""
    log = server.log_path.read_text(errors="replace")
    assert f"from {server.triton_env.resolve()};" in log, "model.py did not log the Triton venv as its sys.prefix"


def test_embedding_equals_onnxruntime(client: grpcclient.InferenceServerClient, session) -> None:
    images = demo_images(8)
    result = client.infer(MODEL, [image_input(images)])
    embedding, logits = result.as_numpy("EMBEDDING"), result.as_numpy("LOGITS")
    expected_embedding, expected_logits = session.run(["EMBEDDING", "LOGITS"], {"IMAGE": images})

    assert embedding.shape == (8, 1280) and embedding.dtype == np.float32
    np.testing.assert_allclose(embedding, expected_embedding, atol=1e-5)
    np.testing.assert_allclose(logits, expected_logits, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)


def test_only_requested_outputs_are_returned(client: grpcclient.InferenceServerClient) -> None:
    result = client.infer(MODEL, [image_input(demo_images(1))], outputs=[grpcclient.InferRequestedOutput("EMBEDDING")])
    assert result.as_numpy("EMBEDDING").shape == (1, 1280)
    assert result.as_numpy("LOGITS") is None


def test_concurrent_requests_get_their_own_rows(client: grpcclient.InferenceServerClient, session) -> None:
    """Requests merged by the dynamic batcher must be split back in order, each to its sender."""
    images = demo_images(12, offset=8)
    (expected,) = session.run(["EMBEDDING"], {"IMAGE": images})
    sizes = [1, 3, 2, 1, 4, 1]
    results: dict[int, np.ndarray | Exception] = {}
    done = threading.Event()

    def callback(index: int, result, error) -> None:  # type: ignore[no-untyped-def]
        results[index] = error if error is not None else result.as_numpy("EMBEDDING")
        if len(results) == len(sizes):
            done.set()

    starts = np.cumsum([0, *sizes[:-1]])
    for index, (start, size) in enumerate(zip(starts, sizes)):
        client.async_infer(
            MODEL,
            [image_input(images[start : start + size])],
            callback=lambda result, error, index=index: callback(index, result, error),
        )
    assert done.wait(30), "not all responses arrived"

    for index, (start, size) in enumerate(zip(starts, sizes)):
        got = results[index]
        assert not isinstance(got, Exception), got
        np.testing.assert_allclose(got, expected[start : start + size], atol=1e-5)


def test_wrong_channel_count_is_rejected(client: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match=r"(?i)shape|dims"):
        client.infer(MODEL, [image_input(np.zeros((1, 224, 224, 4), np.uint8))])


def test_the_localisation_size_gives_a_finer_saliency_map(client: grpcclient.InferenceServerClient) -> None:
    result = client.infer(
        MODEL,
        [image_input(np.zeros((2, 288, 288, 3), np.uint8))],
        outputs=[grpcclient.InferRequestedOutput("SALIENCY")],
    )
    assert result.as_numpy("SALIENCY").shape == (2, 18, 18)


def test_missing_onnx_file_is_reported_before_starting(tmp_path: Path) -> None:
    version = tmp_path / "repo" / MODEL / "2"
    version.mkdir(parents=True)
    (version / "model.py").write_text("# model.py without its model.onnx\n")
    with pytest.raises(FileNotFoundError, match=r"tools/export_model\.py"):
        TritonServer(tmp_path / "repo", tmp_path / "runtime").start()
