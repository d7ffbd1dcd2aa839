"""Mapping between the wire types (imagesearch.v1) and the plain domain types."""

from __future__ import annotations

import dataclasses
from typing import Any

from google.protobuf.message import Message

from imagesearch.common.types import FilterSpec, Hit, ImageErrorReason, ModelId, ProductRecord, Region
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.v1 import common_pb2


def model_from_pb(msg: common_pb2.ModelInfo) -> ModelId:
    return ModelId(name=msg.name, version=msg.version, dimension=msg.dimension)


def model_to_pb(model: ModelId, calibration: ScoreCalibration | None = None) -> common_pb2.ModelInfo:
    """The calibration, when given, rides beside the model's identity (ModelId has none)."""
    msg = common_pb2.ModelInfo(name=model.name, version=model.version, dimension=model.dimension)
    if calibration is not None:
        msg.same_product_calibration.slope = calibration.slope
        msg.same_product_calibration.intercept = calibration.intercept
    return msg


def calibration_from_pb(msg: common_pb2.ModelInfo) -> ScoreCalibration | None:
    """None when the model carries no calibration; ValueError when the one it carries is unusable."""
    if not msg.HasField("same_product_calibration"):
        return None
    return ScoreCalibration(msg.same_product_calibration.slope, msg.same_product_calibration.intercept)


def region_from_pb(msg: common_pb2.BoundingBox | None) -> Region | None:
    """None when the field is unset (whole image); validated otherwise."""
    if msg is None or msg.ByteSize() == 0:
        return None
    region = Region(msg.x_min, msg.y_min, msg.x_max, msg.y_max)
    region.validate()
    return region


def region_to_pb(region: Region | None) -> common_pb2.BoundingBox | None:
    if region is None:
        return None
    return common_pb2.BoundingBox(x_min=region.x_min, y_min=region.y_min, x_max=region.x_max, y_max=region.y_max)


def filter_from_pb(msg: common_pb2.Filter) -> FilterSpec:
    """Normalise a filter (sorted, de-duplicated) so equal filters compare equal.

    Validation of the values themselves belongs to the retriever, which knows
    what its store can express.
    """
    attrs: dict[str, set[str]] = {}
    for clause in msg.attributes:
        attrs.setdefault(clause.key, set()).update(clause.values)
    return FilterSpec(
        categories=tuple(sorted(set(msg.categories))),
        price_min=msg.price.min if msg.HasField("price") and msg.price.HasField("min") else None,
        price_max=msg.price.max if msg.HasField("price") and msg.price.HasField("max") else None,
        brands=tuple(sorted(set(msg.brands))),
        attributes=tuple((key, tuple(sorted(values))) for key, values in sorted(attrs.items())),
    )


def filter_to_pb(spec: FilterSpec) -> common_pb2.Filter:
    msg = common_pb2.Filter(
        categories=list(spec.categories),
        brands=list(spec.brands),
        attributes=[common_pb2.AttributeFilter(key=k, values=list(v)) for k, v in spec.attributes],
    )
    if spec.price_min is not None:
        msg.price.min = spec.price_min
    if spec.price_max is not None:
        msg.price.max = spec.price_max
    return msg


def _scalar_fields(cls: type[Any], msg: Message) -> dict[str, Any]:
    """The fields `cls` and the message share by name, but for the containers (converted by the caller)."""
    return {f.name: getattr(msg, f.name) for f in dataclasses.fields(cls) if f.name not in _CONTAINERS}


# Fields the wire holds as protobuf containers: copied into plain dicts and tuples.
_CONTAINERS = frozenset({"attributes", "image_uris"})


def product_from_pb(msg: common_pb2.Product) -> ProductRecord:
    return ProductRecord(
        **_scalar_fields(ProductRecord, msg), attributes=dict(msg.attributes), image_uris=tuple(msg.image_uris)
    )


def product_to_pb(product: ProductRecord) -> common_pb2.Product:
    return common_pb2.Product(**dataclasses.asdict(product))


def hit_from_pb(msg: common_pb2.SearchHit) -> Hit:
    return Hit(**_scalar_fields(Hit, msg), attributes=dict(msg.attributes))


def hit_to_pb(hit: Hit) -> common_pb2.SearchHit:
    return common_pb2.SearchHit(**dataclasses.asdict(hit))


def image_error_to_pb(reason: ImageErrorReason, message: str) -> common_pb2.ImageError:
    """ImageErrorReason mirrors the wire enum number for number."""
    return common_pb2.ImageError(reason=int(reason), message=message)  # type: ignore[arg-type]  # the enum's number


def image_error_from_pb(msg: common_pb2.ImageError) -> tuple[ImageErrorReason, str]:
    return ImageErrorReason(msg.reason), msg.message
