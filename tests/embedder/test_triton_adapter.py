"""The Triton adapter without a server: the contract check, the probe, error mapping."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from tritonclient.grpc import model_config_pb2, service_pb2
from tritonclient.utils import InferenceServerException

from imagesearch.common.errors import DeadlineExceeded, DomainError, ResourceExhausted, Unavailable
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.contracts.model import calibration_of
from imagesearch_embedder.model import ServedModel
from imagesearch_embedder.triton import ModelContractError, TritonEmbedder, TritonOptions, check_contract


def metadata(inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]], versions=("1",)):  # type: ignore[no-untyped-def]
    tensor = service_pb2.ModelMetadataResponse.TensorMetadata
    return service_pb2.ModelMetadataResponse(
        name="m",
        versions=list(versions),
        platform="python",
        inputs=[tensor(name=n, datatype=d, shape=s) for n, d, s in inputs],
        outputs=[tensor(name=n, datatype=d, shape=s) for n, d, s in outputs],
    )


GOOD_IN = [("IMAGE", "UINT8", [-1, 224, 224, 3])]
GOOD_OUT = [("EMBEDDING", "FP32", [-1, 1280]), ("LOGITS", "FP32", [-1, 1000])]


def test_contract_accepts_the_served_model_shape() -> None:
    c = check_contract(
        "m", "", metadata(GOOD_IN, GOOD_OUT, versions=("2", "10", "9")), model_config_pb2.ModelConfig(max_batch_size=32)
    )
    assert (c.version, c.input_height, c.input_width, c.dimension, c.max_batch_size) == ("10", 224, 224, 1280, 32)


def test_contract_lists_every_difference() -> None:
    bad = metadata([("IMAGE", "FP32", [-1, 3, 224, 224])], [("FEATURES", "FP32", [-1, 512])])
    with pytest.raises(ModelContractError) as info:
        check_contract("m", "", bad, model_config_pb2.ModelConfig(max_batch_size=0))
    message = str(info.value)
    assert "max_batch_size is 0" in message
    assert "input IMAGE has datatype FP32, expected UINT8" in message
    assert "expected [-1, H, W, 3]" in message
    assert "no output named EMBEDDING (outputs: ['FEATURES'])" in message


def test_contract_checks_the_pinned_version() -> None:
    with pytest.raises(ModelContractError, match=r"version 3 is not served \(versions: \['1'\]\)"):
        check_contract("m", "3", metadata(GOOD_IN, GOOD_OUT), model_config_pb2.ModelConfig(max_batch_size=8))


def config_with(max_batch_size: int = 32, **parameters: str) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig(max_batch_size=max_batch_size)
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    return config


def test_contract_leaves_an_open_embedding_dimension_to_the_probe() -> None:
    open_out = [("EMBEDDING", "FP32", [-1, -1]), ("LOGITS", "FP32", [-1, 1000])]
    c = check_contract("m", "", metadata(GOOD_IN, open_out), config_with())
    assert c.dimension == 0  # unknown until connect() runs one inference
    for bad in ([-1, -1, -1], [-1, 0], [-1]):
        with pytest.raises(
            ModelContractError, match=r"output EMBEDDING has shape .*expected \[-1, D\] \(D fixed, or -1"
        ):
            check_contract("m", "", metadata(GOOD_IN, [("EMBEDDING", "FP32", bad)]), config_with())


def test_contract_picks_the_served_versions_calibration() -> None:
    config = config_with(same_product_calibration_v2="30.80,-21.80", same_product_calibration_v3="12.5,-6")
    latest = check_contract("m", "", metadata(GOOD_IN, GOOD_OUT, versions=("2", "3")), config)
    assert (latest.version, latest.calibration) == ("3", ScoreCalibration(12.5, -6.0))
    pinned = check_contract("m", "2", metadata(GOOD_IN, GOOD_OUT, versions=("2", "3")), config)
    assert pinned.calibration == ScoreCalibration(30.80, -21.80)
    # A version without its own parameter has none (the gateway then uses its fallback setting).
    assert check_contract("m", "", metadata(GOOD_IN, GOOD_OUT, versions=("4",)), config).calibration is None
    assert calibration_of(config, "4") is None


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("30.8", "parameter same_product_calibration_v1 must be 'slope,intercept' (two numbers), got '30.8'"),
        ("a,b", "got 'a,b'"),
        ("1,2,3", "got '1,2,3'"),
        (
            "-3,1",
            "parameter same_product_calibration_v1 needs a finite slope > 0 and a finite intercept, got slope -3.0",
        ),
        ("nan,1", "got slope nan"),
    ],
)
def test_an_unusable_calibration_breaks_the_contract(text: str, fragment: str) -> None:
    with pytest.raises(ModelContractError) as info:
        check_contract("m", "", metadata(GOOD_IN, GOOD_OUT), config_with(same_product_calibration_v1=text))
    assert fragment in str(info.value) and "model 'm' does not match the embedder's contract" in str(info.value)


class ProbeClient:
    """Answers the probe inference with a canned EMBEDDING; records what it was sent."""

    def __init__(self, embedding: np.ndarray | None) -> None:
        self.embedding = embedding
        self.sent: list[tuple[list[int], str]] = []

    async def infer(self, model_name, inputs, model_version, outputs, client_timeout):  # type: ignore[no-untyped-def]
        self.sent.append((inputs[0].shape(), model_version))
        return SimpleNamespace(as_numpy=lambda name: self.embedding if name == "EMBEDDING" else None)


def contract(dimension: int, height: int = -1) -> ServedModel:
    return ServedModel(
        name="m", version="3", input_height=height, input_width=height, dimension=dimension, max_batch_size=8
    )


async def test_the_probe_learns_the_dimension_at_the_embedders_image_size() -> None:
    adapter = TritonEmbedder(TritonOptions("h:1", "m", "", 2, image_size=224), TracerProvider())
    client = ProbeClient(np.zeros((1, 512), dtype=np.float32))
    assert (await adapter._probe(client, contract(0))).dimension == 512  # type: ignore[arg-type]
    assert client.sent == [([1, 224, 224, 3], "3")]
    fixed = ProbeClient(np.zeros((1, 1280), dtype=np.float32))
    assert (await adapter._probe(fixed, contract(1280, height=256))).dimension == 1280  # type: ignore[arg-type]
    assert fixed.sent == [([1, 256, 256, 3], "3")]  # a model with a fixed size gets its own


@pytest.mark.parametrize(
    "embedding,dimension,fragment",
    [
        (np.zeros((1, 512), np.float32), 1280, "returned 512-d EMBEDDING but Triton's metadata declares 1280-d"),
        (np.zeros((1, 0), np.float32), 0, "returned EMBEDDING of shape (1, 0), expected (1, D)"),
        (np.zeros((512,), np.float32), 0, "returned EMBEDDING of shape (512,), expected (1, D)"),
        (None, 0, "returned EMBEDDING of shape None"),
    ],
)
async def test_the_probe_refuses_what_the_contract_cannot_use(embedding, dimension: int, fragment: str) -> None:  # type: ignore[no-untyped-def]
    adapter = TritonEmbedder(TritonOptions("h:1", "m", "", 2), TracerProvider())
    with pytest.raises(ModelContractError) as info:
        await adapter._probe(ProbeClient(embedding), contract(dimension))  # type: ignore[arg-type]
    assert f"model 'm' version 3: a probe inference of one 256x256 image {fragment}" in str(info.value)


@pytest.mark.parametrize(
    "status,error,fragment",
    [
        ("StatusCode.UNAVAILABLE", Unavailable, "triton unavailable at h:1: boom"),
        ("StatusCode.DEADLINE_EXCEEDED", DeadlineExceeded, "triton at h:1 did not answer in time"),
        ("StatusCode.INTERNAL", DomainError, "triton at h:1 failed: StatusCode.INTERNAL: boom"),
        # Triton's queue policy: the queue is full, or the request waited past its timeout.
        ("StatusCode.UNAVAILABLE", ResourceExhausted, "is overloaded (its queue is full); retry with back-off"),
        ("StatusCode.RESOURCE_EXHAUSTED", ResourceExhausted, "is overloaded"),
    ],
)
def test_triton_errors_map_to_domain_errors(status: str, error: type, fragment: str) -> None:
    message = {ResourceExhausted: "Exceeds maximum queue size"}.get(error, "boom")
    if status.endswith("RESOURCE_EXHAUSTED"):
        message = "Request timeout expired"
    mapped = TritonEmbedder(TritonOptions("h:1", "m", "", 2), TracerProvider())._map_error(
        InferenceServerException(message, status=status)
    )
    assert type(mapped) is error and fragment in mapped.message
