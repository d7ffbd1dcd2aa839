from imagesearch.v1 import common_pb2 as _common_pb2
from imagesearch.v1 import embedder_pb2 as _embedder_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VectorSearchRequest(_message.Message):
    __slots__ = ("model", "vector", "product_id", "any_of", "top_k", "filter", "min_score", "catalog")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    ANY_OF_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelInfo
    vector: _embedder_pb2.Embedding
    product_id: str
    any_of: VectorSet
    top_k: int
    filter: _common_pb2.Filter
    min_score: float
    catalog: str
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., vector: _Optional[_Union[_embedder_pb2.Embedding, _Mapping]] = ..., product_id: _Optional[str] = ..., any_of: _Optional[_Union[VectorSet, _Mapping]] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., min_score: _Optional[float] = ..., catalog: _Optional[str] = ...) -> None: ...

class VectorSet(_message.Message):
    __slots__ = ("vectors",)
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedCompositeFieldContainer[_embedder_pb2.Embedding]
    def __init__(self, vectors: _Optional[_Iterable[_Union[_embedder_pb2.Embedding, _Mapping]]] = ...) -> None: ...

class VectorSearchResponse(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[_common_pb2.SearchHit]
    def __init__(self, hits: _Optional[_Iterable[_Union[_common_pb2.SearchHit, _Mapping]]] = ...) -> None: ...

class IndexedImage(_message.Message):
    __slots__ = ("uri", "vector")
    URI_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    uri: str
    vector: _embedder_pb2.Embedding
    def __init__(self, uri: _Optional[str] = ..., vector: _Optional[_Union[_embedder_pb2.Embedding, _Mapping]] = ...) -> None: ...

class IndexedProduct(_message.Message):
    __slots__ = ("product", "images")
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    product: _common_pb2.Product
    images: _containers.RepeatedCompositeFieldContainer[IndexedImage]
    def __init__(self, product: _Optional[_Union[_common_pb2.Product, _Mapping]] = ..., images: _Optional[_Iterable[_Union[IndexedImage, _Mapping]]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("model", "products", "catalog")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelInfo
    products: _containers.RepeatedCompositeFieldContainer[IndexedProduct]
    catalog: str
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., products: _Optional[_Iterable[_Union[IndexedProduct, _Mapping]]] = ..., catalog: _Optional[str] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("products", "images")
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    products: int
    images: int
    def __init__(self, products: _Optional[int] = ..., images: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("model", "product_ids", "catalog")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelInfo
    product_ids: _containers.RepeatedScalarFieldContainer[str]
    catalog: str
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., product_ids: _Optional[_Iterable[str]] = ..., catalog: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted", "not_found")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    not_found: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted: _Optional[_Iterable[str]] = ..., not_found: _Optional[_Iterable[str]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("model", "product_id", "catalog")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelInfo
    product_id: str
    catalog: str
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., product_id: _Optional[str] = ..., catalog: _Optional[str] = ...) -> None: ...

class DropCatalogRequest(_message.Message):
    __slots__ = ("model", "catalog")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelInfo
    catalog: str
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., catalog: _Optional[str] = ...) -> None: ...

class DropCatalogResponse(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: bool = ...) -> None: ...
