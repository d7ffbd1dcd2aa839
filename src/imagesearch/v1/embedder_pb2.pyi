from imagesearch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedImage(_message.Message):
    __slots__ = ("content", "region", "localize", "trim_to_object", "detect_objects", "localize_in_region", "same_content_as")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    LOCALIZE_FIELD_NUMBER: _ClassVar[int]
    TRIM_TO_OBJECT_FIELD_NUMBER: _ClassVar[int]
    DETECT_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    LOCALIZE_IN_REGION_FIELD_NUMBER: _ClassVar[int]
    SAME_CONTENT_AS_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    region: _common_pb2.BoundingBox
    localize: bool
    trim_to_object: bool
    detect_objects: bool
    localize_in_region: bool
    same_content_as: int
    def __init__(self, content: _Optional[bytes] = ..., region: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., localize: bool = ..., trim_to_object: bool = ..., detect_objects: bool = ..., localize_in_region: bool = ..., same_content_as: _Optional[int] = ...) -> None: ...

class FoundObject(_message.Message):
    __slots__ = ("box", "embedding", "salience")
    BOX_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    SALIENCE_FIELD_NUMBER: _ClassVar[int]
    box: _common_pb2.BoundingBox
    embedding: Embedding
    salience: float
    def __init__(self, box: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., embedding: _Optional[_Union[Embedding, _Mapping]] = ..., salience: _Optional[float] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[EmbedImage]
    def __init__(self, images: _Optional[_Iterable[_Union[EmbedImage, _Mapping]]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class EmbedResult(_message.Message):
    __slots__ = ("embedding", "error", "whole_image", "box", "objects", "popout_box")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WHOLE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    POPOUT_BOX_FIELD_NUMBER: _ClassVar[int]
    embedding: Embedding
    error: _common_pb2.ImageError
    whole_image: Embedding
    box: _common_pb2.BoundingBox
    objects: _containers.RepeatedCompositeFieldContainer[FoundObject]
    popout_box: _common_pb2.BoundingBox
    def __init__(self, embedding: _Optional[_Union[Embedding, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ImageError, _Mapping]] = ..., whole_image: _Optional[_Union[Embedding, _Mapping]] = ..., box: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., objects: _Optional[_Iterable[_Union[FoundObject, _Mapping]]] = ..., popout_box: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("results", "model")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[EmbedResult]
    model: _common_pb2.ModelInfo
    def __init__(self, results: _Optional[_Iterable[_Union[EmbedResult, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
