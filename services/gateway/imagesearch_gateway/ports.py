"""What the gateway's cores need from the outside world, in plain types.

The cores (search.py, catalog.py) are written against these protocols; the adapters that
implement them over gRPC and Redis live in clients.py and cache.py, and tests use fakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from imagesearch.common.types import FilterSpec, Floats, Hit, ImageErrorReason, ModelId, ProductRecord, Region
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch_gateway.models import ModelTracker


@dataclass(frozen=True)
class ImageFault:
    """Why the embedder refused one image."""

    reason: ImageErrorReason
    message: str


@dataclass(frozen=True)
class ObjectVector:
    """An object the embedder found in a photo, and its crop's vector."""

    box: Region
    salience: float
    vector: Floats


@dataclass(frozen=True)
class EmbeddedImage:
    """One image's vector (or why it has none), and the whole photo's vector when it was localised;
    the box the vector was cropped to, every object found when asked (main first), and the photo's
    most conspicuous part when it was localised (a second guess at the product, to look at again)."""

    vector: Floats | ImageFault
    whole: Floats | None = None
    box: Region | None = None
    objects: tuple[ObjectVector, ...] = ()
    popout: Region | None = None


@dataclass(frozen=True)
class Embeddings:
    """One entry per image sent, in order, and the model that made every vector (with its own calibration)."""

    images: list[EmbeddedImage]
    model: ModelId
    calibration: ScoreCalibration | None


# (uri, vector) per image of a product to write.
ImageVector = tuple[str, Floats]


class Embedder(Protocol):
    async def embed(
        self,
        images: Sequence[tuple[bytes, Region | None]],
        *,
        localize: bool = False,
        trim_to_object: bool = False,
        detect_objects: bool = False,
        localize_in_region: bool | Sequence[bool] = False,
    ) -> Embeddings:
        """`localize` suits shopper photos (busy scenes), `trim_to_object` catalog shots on a plain
        background; `detect_objects` (with `localize`) also finds and embeds the photo's other objects;
        `localize_in_region` looks for the product inside each image's region (a zoomed look): for
        all of them, or per image."""
        ...

    async def model_info(self) -> tuple[ModelId, ScoreCalibration | None]: ...


@dataclass(frozen=True)
class Lookup:
    """One retriever search in a catalog: by vector, by several (each product at its best over them),
    or by product ("more like this")."""

    catalog: str
    top_k: int
    vector: Floats | None = None
    product_id: str | None = None
    any_of: tuple[Floats, ...] = ()
    filter_spec: FilterSpec = FilterSpec()
    min_score: float = -1.0


class Retriever(Protocol):
    def check_available(self) -> None:
        """Raise Unavailable now when the retriever is known to be down (its breaker is open)."""

    async def search(self, model: ModelId, lookup: Lookup) -> list[Hit]: ...

    async def upsert(
        self, model: ModelId, products: Sequence[tuple[ProductRecord, list[ImageVector]]], catalog: str
    ) -> None: ...

    async def delete(self, model: ModelId, product_ids: Sequence[str], catalog: str) -> tuple[list[str], list[str]]: ...

    async def get(self, model: ModelId, product_id: str, catalog: str) -> ProductRecord: ...

    async def drop_catalog(self, model: ModelId, catalog: str) -> bool: ...


class Cache(Protocol):
    async def get(self, catalog: str, fingerprint: str, read: bool = True) -> tuple[bytes | None, str | None]:
        """(cached value or None, token to store the answer under, or None when it must not be stored)."""
        ...

    async def put(self, catalog: str, fingerprint: str, token: str, value: bytes) -> None: ...

    def discard_corrupt(self) -> None:
        """A value from `get` did not decode: it is counted, and read as a miss."""

    def writing(self, catalog: str) -> AbstractAsyncContextManager[None]:
        """Around every write to the catalog: no answer from before it, or from while it may be
        landing, is served after it."""
        ...


@dataclass(frozen=True)
class Ports:
    """Everything a gateway core talks to, and the one owner of the served model."""

    embedder: Embedder
    retriever: Retriever
    cache: Cache
    models: ModelTracker


OptionsT = TypeVar("OptionsT")


class Core(Generic[OptionsT]):
    """A gateway core: the ports it talks to, and its options."""

    def __init__(self, ports: Ports, options: OptionsT) -> None:
        self._embedder, self._retriever, self._cache = ports.embedder, ports.retriever, ports.cache
        self._models = ports.models
        self._options = options
