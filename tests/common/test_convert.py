"""Wire conversions: every field crosses in both directions, and filters normalise so equal ones compare equal."""

from __future__ import annotations

import pytest

from imagesearch.common import convert
from imagesearch.common.errors import InvalidArgument
from imagesearch.common.types import FilterSpec, Hit, ImageErrorReason, ModelId, ProductRecord, Region
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.v1 import common_pb2


def test_products_and_hits_round_trip_with_every_field() -> None:
    product = ProductRecord("p1", "title", "shoes", "acme", 12.5, {"colour": "red"}, ("a.jpg", "b.jpg"))
    assert convert.product_from_pb(convert.product_to_pb(product)) == product
    hit = Hit("p1", 0.5, "title", "shoes", "acme", 12.5, "a.jpg", {"colour": "red"}, 0.25)
    assert convert.hit_from_pb(convert.hit_to_pb(hit)) == hit


def test_models_carry_their_calibration_beside_the_identity() -> None:
    model = ModelId("image_embedding", "3", 512)
    msg = convert.model_to_pb(model, ScoreCalibration(12.5, -6.0))
    assert convert.model_from_pb(msg) == model and convert.calibration_from_pb(msg) == ScoreCalibration(12.5, -6.0)
    assert convert.calibration_from_pb(convert.model_to_pb(model)) is None


def test_filters_are_normalised_and_round_trip() -> None:
    msg = common_pb2.Filter(
        categories=["b", "a", "b"],
        brands=["z"],
        attributes=[
            common_pb2.AttributeFilter(key="size", values=["m", "s"]),
            common_pb2.AttributeFilter(key="colour", values=["red"]),
            common_pb2.AttributeFilter(key="size", values=["l"]),
        ],
    )
    msg.price.max = 50
    spec = convert.filter_from_pb(msg)
    assert spec == FilterSpec(
        categories=("a", "b"),
        price_max=50.0,
        brands=("z",),
        attributes=(("colour", ("red",)), ("size", ("l", "m", "s"))),
    )
    assert convert.filter_from_pb(convert.filter_to_pb(spec)) == spec
    assert convert.filter_from_pb(common_pb2.Filter()).empty


def test_regions_and_image_errors() -> None:
    assert convert.region_from_pb(None) is None and convert.region_from_pb(common_pb2.BoundingBox()) is None
    region = Region(0.125, 0.25, 0.5, 0.875)  # exact in float32, as the wire holds them
    assert convert.region_from_pb(convert.region_to_pb(region)) == region
    with pytest.raises(InvalidArgument, match="x_min < x_max"):
        convert.region_from_pb(common_pb2.BoundingBox(x_min=0.5, y_min=0, x_max=0.2, y_max=1))
    error = convert.image_error_to_pb(ImageErrorReason.CORRUPT, "cut short")
    assert error.reason == common_pb2.IMAGE_ERROR_REASON_CORRUPT
    assert convert.image_error_from_pb(error) == (ImageErrorReason.CORRUPT, "cut short")
    # The domain enum mirrors the wire enum, number for number.
    assert {r.name: r.value for r in ImageErrorReason} == {
        name.removeprefix("IMAGE_ERROR_REASON_"): value for name, value in common_pb2.ImageErrorReason.items()
    }
