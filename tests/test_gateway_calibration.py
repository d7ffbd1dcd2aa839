"""The same-product calibration travels with the model version; the setting is only the fallback.

No servers: the embedder, retriever and cache are small fakes.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common import convert
from imagesearch.common.errors import FailedPrecondition
from imagesearch.common.types import Hit, ModelId
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.v1 import common_pb2
from imagesearch_gateway.app import GatewayBackend
from imagesearch_gateway.clients import EmbedderClient
from imagesearch_gateway.core import SearchCore, SearchQuery
from imagesearch_gateway.settings import GatewaySettings

MODEL = ModelId("image_embedding", "3", 512)
FALLBACK = ScoreCalibration.parse("5.00,-1.00")


def logistic(slope: float, intercept: float, score: float) -> float:
    return 1 / (1 + math.exp(-(slope * score + intercept)))


# --------------------------------------------------------------------------- wire format


def test_model_info_carries_the_calibration_beside_the_models_identity() -> None:
    with_fit = convert.model_to_pb(MODEL, ScoreCalibration(12.5, -6.0))
    assert (with_fit.same_product_calibration.slope, with_fit.same_product_calibration.intercept) == (12.5, -6.0)
    assert convert.calibration_from_pb(with_fit) == ScoreCalibration(12.5, -6.0)
    assert convert.model_from_pb(with_fit) == MODEL  # the identity (a cache and collection key) ignores it
    without = convert.model_to_pb(MODEL)
    assert not without.HasField("same_product_calibration") and convert.calibration_from_pb(without) is None


class FakeStub:
    def __init__(self, reply: common_pb2.ModelInfo) -> None:
        self.reply = reply

    async def GetModelInfo(self, request: Any, timeout: float) -> common_pb2.ModelInfo:
        return self.reply


async def test_the_embedder_client_returns_the_models_calibration_and_refuses_an_unusable_one() -> None:
    client = EmbedderClient("127.0.0.1:1", TracerProvider(), 1.0, 1024 * 1024)
    try:
        client._stub = FakeStub(convert.model_to_pb(MODEL, ScoreCalibration(12.5, -6.0)))  # type: ignore[assignment]
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


# --------------------------------------------------------------------------- the gateway follows the model


class FakeEmbedder:
    def __init__(self, calibration: ScoreCalibration | None) -> None:
        self.reply = (MODEL, calibration)

    async def check(self) -> None:
        pass

    async def model_info(self) -> tuple[ModelId, ScoreCalibration | None]:
        return self.reply


class FakeRetriever:
    def __init__(self, scores: list[float]) -> None:
        self.scores = scores

    async def check(self) -> None:
        pass

    async def search(self, model: ModelId, **kwargs: Any) -> list[Hit]:
        return [Hit(f"p{i}", score, "", "shoes", "", 1.0, "") for i, score in enumerate(self.scores)]


class FakeCache:
    def __init__(self) -> None:
        self.fingerprints: list[str] = []

    async def get(self, catalog: str, fingerprint: str, read: bool = True) -> tuple[bytes | None, int | None]:
        self.fingerprints.append(fingerprint)
        return None, None  # caching off: always search

    async def put(self, catalog: str, fingerprint: str, generation: int, value: bytes) -> None:
        raise AssertionError("caching is off")


def backend_with(embedder: FakeEmbedder) -> GatewayBackend:
    backend = GatewayBackend(GatewaySettings(calibration=FALLBACK), TracerProvider())
    backend._embedder, backend._retriever = embedder, FakeRetriever([])  # type: ignore[assignment]
    return backend


async def test_the_backend_uses_the_models_calibration_and_falls_back_to_the_setting() -> None:
    embedder = FakeEmbedder(ScoreCalibration(12.5, -6.0))
    backend = backend_with(embedder)
    await backend.check()
    assert (backend.model, backend.calibration) == (MODEL, ScoreCalibration(12.5, -6.0))
    embedder.reply = (ModelId("image_embedding", "4", 512), None)  # a version without a fit of its own
    await backend.check()
    assert backend.model.version == "4" and backend.calibration == FALLBACK


async def test_search_reads_the_calibration_at_call_time() -> None:
    embedder = FakeEmbedder(ScoreCalibration(12.5, -6.0))
    backend = backend_with(embedder)
    await backend.check()
    cache = FakeCache()
    core = SearchCore(embedder, FakeRetriever([0.7, 0.4]), cache, backend, 10, 100, False, 0.0, 0, 0, 0.5)  # type: ignore[arg-type]
    first = await core.search(SearchQuery(product_id="q"))
    assert [h.same_product_probability for h in first.hits] == [
        pytest.approx(logistic(12.5, -6.0, 0.7)),
        pytest.approx(logistic(12.5, -6.0, 0.4)),
    ]
    embedder.reply = (MODEL, None)  # the same model, now without a fit: the setting applies
    await backend.check()
    second = await core.search(SearchQuery(product_id="q"))
    assert second.hits[0].same_product_probability == pytest.approx(logistic(5.0, -1.0, 0.7))
    # Cached answers hold probabilities, so the calibration is part of the cache key.
    assert cache.fingerprints[0] != cache.fingerprints[1]


def test_the_setting_is_the_fallback_and_says_so() -> None:
    from imagesearch_gateway.settings import ENV_VARS

    [(_, default, meaning)] = [v for v in ENV_VARS if v[0] == "SAME_PRODUCT_CALIBRATION"]
    assert default == "32.84,-23.40" and "only when the served model version carries none" in meaning
    assert GatewaySettings.from_env({"SAME_PRODUCT_CALIBRATION": "5,-1"}).calibration == FALLBACK
