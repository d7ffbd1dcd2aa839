"""In-memory stand-ins for the gateway's ports (tests/gateway/*: no servers)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import numpy as np

from imagesearch.common.types import Hit, ImageErrorReason, ModelId, ProductRecord, Region
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch_gateway.models import ModelTracker
from imagesearch_gateway.ports import EmbeddedImage, Embeddings, ImageFault, ImageVector, Lookup, Ports

MODEL = ModelId("image_embedding", "3", 4)
FALLBACK = ScoreCalibration(5.0, -1.0)


def hit(pid: str, score: float, category: str = "c") -> Hit:
    return Hit(pid, score, "", category, "", 0.0, "")


def hits(*ids: str, score: float = 0.3) -> list[Hit]:
    return [hit(pid, score - i * 0.01) for i, pid in enumerate(ids)]


def tracker(model: ModelId = MODEL, calibration: ScoreCalibration | None = None) -> ModelTracker:
    models = ModelTracker(FALLBACK)
    models.observe(model, calibration)
    return models


Vectors = Callable[[bytes, bool], np.ndarray | ImageFault]


class FakeEmbedder:
    """Vectors from a function of (bytes, trim_to_object); names `model` (settable) as their maker."""

    def __init__(
        self,
        vectors: Vectors | None = None,
        whole: np.ndarray | None = None,
        model: ModelId = MODEL,
        calibration: ScoreCalibration | None = None,
        popout: Region | None = None,
    ) -> None:
        self.vectors: Vectors = vectors or (lambda content, trimmed: np.array([1, 0, 0, 0], np.float32))
        self.whole = whole
        self.popout = popout  # the conspicuous part reported for a localised photo
        self.model, self.calibration = model, calibration
        self.calls: list[tuple[int, bool]] = []  # (images, trim_to_object)
        self.after_call: Callable[[], None] = lambda: None

    async def embed(
        self,
        images: Sequence[tuple[bytes, Region | None]],
        *,
        localize: bool = False,
        trim_to_object: bool = False,
        detect_objects: bool = False,
        localize_in_region: bool | Sequence[bool] = False,
    ) -> Embeddings:
        self.calls.append((len(images), trim_to_object))
        out = []
        for content, _ in images:
            vector = self.vectors(content, trim_to_object)
            localised = localize and not isinstance(vector, ImageFault)
            out.append(
                EmbeddedImage(vector, self.whole if localised else None, popout=self.popout if localised else None)
            )
        reply = Embeddings(out, self.model, self.calibration)
        self.after_call()
        return reply

    async def model_info(self) -> tuple[ModelId, ScoreCalibration | None]:
        return self.model, self.calibration


def corrupt(message: str = "bad bytes") -> ImageFault:
    return ImageFault(ImageErrorReason.CORRUPT, message)


class FakeRetriever:
    """Search answers from a function of the query vector; records writes and searches."""

    def __init__(self, answer: Callable[[np.ndarray | None], list[Hit]] | None = None) -> None:
        self.answer = answer or (lambda vector: [])
        self.writes: list[tuple[ModelId, ProductRecord, list[ImageVector]]] = []
        self.searches: list[ModelId] = []
        self.lookups: list[Lookup] = []
        self.down: Exception | None = None  # raised by check_available() while set

    def check_available(self) -> None:
        if self.down is not None:
            raise self.down

    async def search(self, model: ModelId, lookup: Lookup) -> list[Hit]:
        self.searches.append(model)
        self.lookups.append(lookup)
        if not lookup.any_of:
            return self.answer(lookup.vector)
        best: dict[str, Hit] = {}  # each product at its best over the vectors, as the retriever answers
        for vector in lookup.any_of:
            for found in self.answer(vector):
                if found.product_id not in best or found.score > best[found.product_id].score:
                    best[found.product_id] = found
        return sorted(best.values(), key=lambda h: -h.score)

    async def upsert(
        self, model: ModelId, products: Sequence[tuple[ProductRecord, list[ImageVector]]], catalog: str
    ) -> None:
        self.writes.extend((model, record, images) for record, images in products)

    async def delete(self, model: ModelId, product_ids: Sequence[str], catalog: str) -> tuple[list[str], list[str]]:
        return list(product_ids), []

    async def get(self, model: ModelId, product_id: str, catalog: str) -> ProductRecord:
        return ProductRecord(product_id)

    async def drop_catalog(self, model: ModelId, catalog: str) -> bool:
        return True


class FakeCache:
    """A dict; `token` None turns caching off (every search is a miss that stores nothing)."""

    def __init__(self, token: str | None = "t1") -> None:
        self.token = token
        self.values: dict[tuple[str, str], bytes] = {}
        self.fingerprints: list[str] = []
        self.invalidated: list[str] = []  # catalogs written, in order
        self.corrupt = 0

    async def get(self, catalog: str, fingerprint: str, read: bool = True) -> tuple[bytes | None, str | None]:
        self.fingerprints.append(fingerprint)
        if self.token is None:
            return None, None
        return (self.values.get((catalog, fingerprint)) if read else None), self.token

    async def put(self, catalog: str, fingerprint: str, token: str, value: bytes) -> None:
        self.values[(catalog, fingerprint)] = value

    def discard_corrupt(self) -> None:
        self.corrupt += 1

    @contextlib.asynccontextmanager
    async def writing(self, catalog: str) -> AsyncIterator[None]:
        self.invalidated.append(catalog)
        self.values = {key: value for key, value in self.values.items() if key[0] != catalog}
        yield


def ports(
    embedder: FakeEmbedder | None = None,
    retriever: FakeRetriever | None = None,
    cache: FakeCache | None = None,
    models: ModelTracker | None = None,
) -> Ports:
    """The ports of a core, each a fake unless given."""
    return Ports(embedder or FakeEmbedder(), retriever or FakeRetriever(), cache or FakeCache(), models or tracker())
