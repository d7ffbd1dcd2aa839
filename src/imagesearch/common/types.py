"""Plain-Python domain types shared by the services' cores.

Cores never see protobuf messages; `imagesearch.common.convert` maps these
to and from the wire types at the servicer and client edges.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from imagesearch.common.errors import InvalidArgument

# Embeddings (D,) or (N, D), and saliency maps: float32 throughout.
Floats = NDArray[np.float32]
# Model inputs: RGB images (H, W, 3) or batches (N, H, W, 3) of uint8.
Pixels = NDArray[np.uint8]


@dataclass(frozen=True)
class ModelId:
    """Identifies the model that produced a vector; vectors of different models never mix."""

    name: str
    version: str
    dimension: int


class ImageErrorReason(enum.IntEnum):
    """Why an image was refused: imagesearch.v1.ImageErrorReason, number for number, without protobuf."""

    UNSPECIFIED = 0
    EMPTY = 1
    TOO_LARGE = 2
    UNSUPPORTED_FORMAT = 3
    BAD_DIMENSIONS = 4
    CORRUPT = 5
    BAD_REGION = 6


@dataclass(frozen=True)
class Region:
    """A box in relative coordinates (0..1) of the displayed image."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float

    def validate(self) -> None:
        coords = (self.x_min, self.y_min, self.x_max, self.y_max)
        if not all(math.isfinite(c) and 0.0 <= c <= 1.0 for c in coords):
            raise InvalidArgument(f"region coordinates must lie in [0, 1], got {coords}")
        if self.x_max <= self.x_min or self.y_max <= self.y_min:
            raise InvalidArgument(f"region must have x_min < x_max and y_min < y_max, got {coords}")


@dataclass(frozen=True)
class FilterSpec:
    """Typed filter: every set clause must hold; within a clause any value may match."""

    categories: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    brands: tuple[str, ...] = ()
    # (key, allowed values) pairs, sorted by key so equal filters compare (and cache) equal.
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def empty(self) -> bool:
        return self == FilterSpec()


@dataclass(frozen=True)
class ProductRecord:
    product_id: str
    title: str = ""
    category: str = ""
    brand: str = ""
    price: float = 0.0
    attributes: dict[str, str] = field(default_factory=dict)
    image_uris: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hit:
    """One product of an answer: its fields, its best-matching image and that image's similarity."""

    product_id: str
    score: float
    title: str = ""
    category: str = ""
    brand: str = ""
    price: float = 0.0
    image_uri: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    same_product_probability: float = 0.0
