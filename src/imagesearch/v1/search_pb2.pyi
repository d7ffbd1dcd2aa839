from imagesearch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchRequest(_message.Message):
    __slots__ = ("image", "product_id", "region", "top_k", "filter", "min_score", "skip_cache", "catalog", "restrict_to_predicted_category", "object_index")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    SKIP_CACHE_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    RESTRICT_TO_PREDICTED_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    OBJECT_INDEX_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    product_id: str
    region: _common_pb2.BoundingBox
    top_k: int
    filter: _common_pb2.Filter
    min_score: float
    skip_cache: bool
    catalog: str
    restrict_to_predicted_category: bool
    object_index: int
    def __init__(self, image: _Optional[bytes] = ..., product_id: _Optional[str] = ..., region: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., min_score: _Optional[float] = ..., skip_cache: bool = ..., catalog: _Optional[str] = ..., restrict_to_predicted_category: bool = ..., object_index: _Optional[int] = ...) -> None: ...

class DetectedObject(_message.Message):
    __slots__ = ("index", "box", "category", "salience")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SALIENCE_FIELD_NUMBER: _ClassVar[int]
    index: int
    box: _common_pb2.BoundingBox
    category: CategoryPrediction
    salience: float
    def __init__(self, index: _Optional[int] = ..., box: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., category: _Optional[_Union[CategoryPrediction, _Mapping]] = ..., salience: _Optional[float] = ...) -> None: ...

class CategoryPrediction(_message.Message):
    __slots__ = ("category", "confidence")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    category: str
    confidence: float
    def __init__(self, category: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "model", "cache_hit", "predicted_category", "objects", "searched_box")
    HITS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    SEARCHED_BOX_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[_common_pb2.SearchHit]
    model: _common_pb2.ModelInfo
    cache_hit: bool
    predicted_category: CategoryPrediction
    objects: _containers.RepeatedCompositeFieldContainer[DetectedObject]
    searched_box: _common_pb2.BoundingBox
    def __init__(self, hits: _Optional[_Iterable[_Union[_common_pb2.SearchHit, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., cache_hit: bool = ..., predicted_category: _Optional[_Union[CategoryPrediction, _Mapping]] = ..., objects: _Optional[_Iterable[_Union[DetectedObject, _Mapping]]] = ..., searched_box: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ...) -> None: ...

class ProductImage(_message.Message):
    __slots__ = ("content", "uri")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    uri: str
    def __init__(self, content: _Optional[bytes] = ..., uri: _Optional[str] = ...) -> None: ...

class ProductInput(_message.Message):
    __slots__ = ("product", "images")
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    product: _common_pb2.Product
    images: _containers.RepeatedCompositeFieldContainer[ProductImage]
    def __init__(self, product: _Optional[_Union[_common_pb2.Product, _Mapping]] = ..., images: _Optional[_Iterable[_Union[ProductImage, _Mapping]]] = ...) -> None: ...

class UpsertProductsRequest(_message.Message):
    __slots__ = ("products", "catalog", "duplicate_threshold")
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[ProductInput]
    catalog: str
    duplicate_threshold: float
    def __init__(self, products: _Optional[_Iterable[_Union[ProductInput, _Mapping]]] = ..., catalog: _Optional[str] = ..., duplicate_threshold: _Optional[float] = ...) -> None: ...

class PossibleDuplicate(_message.Message):
    __slots__ = ("product_id", "same_product_probability")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SAME_PRODUCT_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    same_product_probability: float
    def __init__(self, product_id: _Optional[str] = ..., same_product_probability: _Optional[float] = ...) -> None: ...

class ImageFailure(_message.Message):
    __slots__ = ("index", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    error: _common_pb2.ImageError
    def __init__(self, index: _Optional[int] = ..., error: _Optional[_Union[_common_pb2.ImageError, _Mapping]] = ...) -> None: ...

class ProductResult(_message.Message):
    __slots__ = ("product_id", "ok", "error", "image_failures", "images_indexed", "possible_duplicates")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    IMAGES_INDEXED_FIELD_NUMBER: _ClassVar[int]
    POSSIBLE_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    ok: bool
    error: str
    image_failures: _containers.RepeatedCompositeFieldContainer[ImageFailure]
    images_indexed: int
    possible_duplicates: _containers.RepeatedCompositeFieldContainer[PossibleDuplicate]
    def __init__(self, product_id: _Optional[str] = ..., ok: bool = ..., error: _Optional[str] = ..., image_failures: _Optional[_Iterable[_Union[ImageFailure, _Mapping]]] = ..., images_indexed: _Optional[int] = ..., possible_duplicates: _Optional[_Iterable[_Union[PossibleDuplicate, _Mapping]]] = ...) -> None: ...

class UpsertProductsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ProductResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ProductResult, _Mapping]]] = ...) -> None: ...

class DeleteProductsRequest(_message.Message):
    __slots__ = ("product_ids", "catalog")
    PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    product_ids: _containers.RepeatedScalarFieldContainer[str]
    catalog: str
    def __init__(self, product_ids: _Optional[_Iterable[str]] = ..., catalog: _Optional[str] = ...) -> None: ...

class DeleteProductsResponse(_message.Message):
    __slots__ = ("deleted", "not_found")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    not_found: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted: _Optional[_Iterable[str]] = ..., not_found: _Optional[_Iterable[str]] = ...) -> None: ...

class GetProductRequest(_message.Message):
    __slots__ = ("product_id", "catalog")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    catalog: str
    def __init__(self, product_id: _Optional[str] = ..., catalog: _Optional[str] = ...) -> None: ...

class DeleteCatalogRequest(_message.Message):
    __slots__ = ("catalog",)
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    catalog: str
    def __init__(self, catalog: _Optional[str] = ...) -> None: ...

class DeleteCatalogResponse(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: bool = ...) -> None: ...
