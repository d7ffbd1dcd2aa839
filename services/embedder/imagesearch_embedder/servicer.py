"""gRPC edge of the embedder: messages <-> core calls. No logic beyond conversion.

Errors are raised as DomainErrors; the shared interceptor turns them into statuses.
"""

from __future__ import annotations

from collections.abc import Sequence

from imagesearch.common import convert
from imagesearch.common.errors import InvalidArgument
from imagesearch.common.server import RpcContext
from imagesearch.common.types import ImageErrorReason
from imagesearch.imaging.decode import RelativeBox
from imagesearch.imaging.errors import ImageRejected
from imagesearch.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc
from imagesearch_embedder.core import Embedded, EmbedderCore, ImageItem


def _contents(images: Sequence[embedder_pb2.EmbedImage]) -> list[bytes]:
    """Each image's bytes, `same_content_as` resolved to the very bytes object it names (the core
    decodes a photo once however many images share it). A bad reference is the caller's bug, not
    an image's fault: it fails the request."""
    contents: list[bytes] = []
    for index, image in enumerate(images):
        if not image.HasField("same_content_as"):
            contents.append(image.content)
            continue
        source = image.same_content_as
        if source >= index:
            raise InvalidArgument(
                f"images[{index}].same_content_as is {source}: it must name an earlier image of the request"
            )
        if image.content:
            raise InvalidArgument(f"images[{index}] sets both content and same_content_as; send one of them")
        contents.append(contents[source])
    return contents


def _item(image: embedder_pb2.EmbedImage, content: bytes) -> ImageItem | ImageRejected:
    """A malformed region rejects only its own image."""
    try:
        region = convert.region_from_pb(image.region if image.HasField("region") else None)
    except InvalidArgument as err:
        return ImageRejected(ImageErrorReason.BAD_REGION, err.message)
    return ImageItem(
        content,
        region,
        localize=image.localize,
        trim_to_object=image.trim_to_object,
        detect_objects=image.detect_objects,
        localize_in_region=image.localize_in_region,
    )


def _box(box: RelativeBox) -> common_pb2.BoundingBox:
    return common_pb2.BoundingBox(x_min=box[0], y_min=box[1], x_max=box[2], y_max=box[3])


def _result(embedded: Embedded, index: int) -> embedder_pb2.EmbedResult:
    outcome = embedded.results[index]
    if isinstance(outcome, ImageRejected):
        return embedder_pb2.EmbedResult(error=convert.image_error_to_pb(outcome.reason, outcome.message))
    result = embedder_pb2.EmbedResult(embedding=embedder_pb2.Embedding(values=outcome.tolist()))
    if (whole := embedded.wholes.get(index)) is not None:
        result.whole_image.values.extend(whole.tolist())
    if (box := embedded.boxes.get(index)) is not None:
        result.box.CopyFrom(_box(box))
    if (popout := embedded.popouts.get(index)) is not None:
        result.popout_box.CopyFrom(_box(popout))
    for found in embedded.objects.get(index, ()):
        result.objects.add(
            box=_box(found.box),
            embedding=embedder_pb2.Embedding(values=found.vector.tolist()),
            salience=found.salience,
        )
    return result


class EmbedderServicer(embedder_pb2_grpc.EmbedderServiceServicer):
    def __init__(self, core: EmbedderCore) -> None:
        self._core = core

    async def Embed(self, request: embedder_pb2.EmbedRequest, context: RpcContext) -> embedder_pb2.EmbedResponse:
        self._core.check_request(len(request.images))  # before converting anything
        contents = _contents(request.images)
        embedded = await self._core.embed([_item(image, content) for image, content in zip(request.images, contents)])
        return embedder_pb2.EmbedResponse(
            results=[_result(embedded, i) for i in range(len(embedded.results))],
            model=convert.model_to_pb(embedded.model, embedded.calibration),
        )

    async def GetModelInfo(
        self, request: embedder_pb2.GetModelInfoRequest, context: RpcContext
    ) -> common_pb2.ModelInfo:
        served = self._core.served
        return convert.model_to_pb(served.id, served.calibration)
