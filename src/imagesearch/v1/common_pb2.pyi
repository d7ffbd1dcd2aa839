from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_ERROR_REASON_UNSPECIFIED: _ClassVar[ImageErrorReason]
    IMAGE_ERROR_REASON_EMPTY: _ClassVar[ImageErrorReason]
    IMAGE_ERROR_REASON_TOO_LARGE: _ClassVar[ImageErrorReason]
    IMAGE_ERROR_REASON_UNSUPPORTED_FORMAT: _ClassVar[ImageErrorReason]
    IMAGE_ERROR_REASON_BAD_DIMENSIONS: _ClassVar[ImageErrorReason]
    IMAGE_ERROR_REASON_CORRUPT: _ClassVar[ImageErrorReason]
    IMAGE_ERROR_REASON_BAD_REGION: _ClassVar[ImageErrorReason]
IMAGE_ERROR_REASON_UNSPECIFIED: ImageErrorReason
IMAGE_ERROR_REASON_EMPTY: ImageErrorReason
IMAGE_ERROR_REASON_TOO_LARGE: ImageErrorReason
IMAGE_ERROR_REASON_UNSUPPORTED_FORMAT: ImageErrorReason
IMAGE_ERROR_REASON_BAD_DIMENSIONS: ImageErrorReason
IMAGE_ERROR_REASON_CORRUPT: ImageErrorReason
IMAGE_ERROR_REASON_BAD_REGION: ImageErrorReason

class BoundingBox(_message.Message):
    __slots__ = ("x_min", "y_min", "x_max", "y_max")
    X_MIN_FIELD_NUMBER: _ClassVar[int]
    Y_MIN_FIELD_NUMBER: _ClassVar[int]
    X_MAX_FIELD_NUMBER: _ClassVar[int]
    Y_MAX_FIELD_NUMBER: _ClassVar[int]
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    def __init__(self, x_min: _Optional[float] = ..., y_min: _Optional[float] = ..., x_max: _Optional[float] = ..., y_max: _Optional[float] = ...) -> None: ...

class PriceRange(_message.Message):
    __slots__ = ("min", "max")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    min: float
    max: float
    def __init__(self, min: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class AttributeFilter(_message.Message):
    __slots__ = ("key", "values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("categories", "price", "brands", "attributes")
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    BRANDS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedScalarFieldContainer[str]
    price: PriceRange
    brands: _containers.RepeatedScalarFieldContainer[str]
    attributes: _containers.RepeatedCompositeFieldContainer[AttributeFilter]
    def __init__(self, categories: _Optional[_Iterable[str]] = ..., price: _Optional[_Union[PriceRange, _Mapping]] = ..., brands: _Optional[_Iterable[str]] = ..., attributes: _Optional[_Iterable[_Union[AttributeFilter, _Mapping]]] = ...) -> None: ...

class Product(_message.Message):
    __slots__ = ("product_id", "title", "category", "brand", "price", "attributes", "image_uris")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URIS_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    title: str
    category: str
    brand: str
    price: float
    attributes: _containers.ScalarMap[str, str]
    image_uris: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, product_id: _Optional[str] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., brand: _Optional[str] = ..., price: _Optional[float] = ..., attributes: _Optional[_Mapping[str, str]] = ..., image_uris: _Optional[_Iterable[str]] = ...) -> None: ...

class ScoreCalibration(_message.Message):
    __slots__ = ("slope", "intercept")
    SLOPE_FIELD_NUMBER: _ClassVar[int]
    INTERCEPT_FIELD_NUMBER: _ClassVar[int]
    slope: float
    intercept: float
    def __init__(self, slope: _Optional[float] = ..., intercept: _Optional[float] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "dimension", "same_product_calibration")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    SAME_PRODUCT_CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    dimension: int
    same_product_calibration: ScoreCalibration
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., dimension: _Optional[int] = ..., same_product_calibration: _Optional[_Union[ScoreCalibration, _Mapping]] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("product_id", "score", "title", "category", "brand", "price", "image_uri", "attributes", "same_product_probability")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URI_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    SAME_PRODUCT_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    score: float
    title: str
    category: str
    brand: str
    price: float
    image_uri: str
    attributes: _containers.ScalarMap[str, str]
    same_product_probability: float
    def __init__(self, product_id: _Optional[str] = ..., score: _Optional[float] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., brand: _Optional[str] = ..., price: _Optional[float] = ..., image_uri: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., same_product_probability: _Optional[float] = ...) -> None: ...

class ImageError(_message.Message):
    __slots__ = ("reason", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: ImageErrorReason
    message: str
    def __init__(self, reason: _Optional[_Union[ImageErrorReason, str]] = ..., message: _Optional[str] = ...) -> None: ...
