"""Plain-Python domain types shared by the services' cores.

Cores never see protobuf messages; `imagesearch.common.convert` maps these
to and from the wire types at the servicer and client edges.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from imagesearch.common.errors import InvalidArgument


@dataclass(frozen=True)
class ModelId:
    """Identifies the model that produced a vector; vectors of different models never mix."""

    name: str
    version: str
    dimension: int


@dataclass(frozen=True)
class ScoreCalibration:
    """Logistic map from a model's cosine score to a calibrated "same product" probability.

    p = 1 / (1 + exp(-(slope * score + intercept))), slope > 0 so it is monotone in the
    score. Each model version has its own score scale (a whitened version's differs
    entirely), so a fit belongs to one version and travels beside its ModelId, never
    inside it: ModelId keys collections and caches, and a refit is not another model.
    """

    slope: float
    intercept: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.slope) and self.slope > 0 and math.isfinite(self.intercept)):
            raise ValueError(
                f"needs a finite slope > 0 and a finite intercept, got slope {self.slope}, intercept {self.intercept}"
            )

    @classmethod
    def parse(cls, text: str) -> "ScoreCalibration":
        """'slope,intercept', e.g. '30.80,-21.80'; a ValueError says what is wrong."""
        try:
            slope, intercept = (float(part) for part in text.split(","))
        except ValueError:
            raise ValueError(f"must be 'slope,intercept' (two numbers), got {text!r}") from None
        return cls(slope, intercept)

    def probability(self, score: float) -> float:
        z = self.slope * score + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


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
    product_id: str
    score: float
    title: str
    category: str
    brand: str
    price: float
    image_uri: str
    attributes: dict[str, str] = field(default_factory=dict)
    same_product_probability: float = 0.0


DEFAULT_CATALOG = ""
_CATALOG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
MAX_CATALOG_CHARS = 48


def validate_catalog(name: str) -> str:
    """A catalog name: "" (the default catalog) or 1-48 characters of [a-z0-9_]."""
    if name and (len(name) > MAX_CATALOG_CHARS or not set(name) <= _CATALOG_CHARS):
        raise InvalidArgument(
            f"catalog must be 1-{MAX_CATALOG_CHARS} characters of a-z, 0-9 and _ (or empty for the default), got {name[:64]!r}"
        )
    return name
