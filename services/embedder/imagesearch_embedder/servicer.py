"""gRPC edge of the embedder: messages <-> core calls. No logic beyond conversion.

Errors are raised as DomainErrors; the shared interceptor turns them into statuses.
"""

from __future__ import annotations

from imagesearch.common import convert
from imagesearch.common.errors import InvalidArgument
from imagesearch.common.server import RpcContext
from imagesearch.common.types import ImageErrorReason
from imagesearch.imaging.decode import RelativeBox
from imagesearch.imaging.errors import ImageRejected
from imagesearch.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc
from imagesearch_embedder.core import Embedded, EmbedderCore, ImageItem


def _item(image: embedder_pb2.EmbedImage) -> ImageItem | ImageRejected:
    """A malformed region rejects only its own image."""
    try:
        region = convert.region_from_pb(image.region if image.HasField("region") else None)
    except InvalidArgument as err:
        return ImageRejected(ImageErrorReason.BAD_REGION, err.message)
    return ImageItem(
        image.content,
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
        embedded = await self._core.embed([_item(image) for image in request.images])
        return embedder_pb2.EmbedResponse(
            results=[_result(embedded, i) for i in range(len(embedded.results))],
            model=convert.model_to_pb(embedded.model, embedded.calibration),
        )

    async def GetModelInfo(
        self, request: embedder_pb2.GetModelInfoRequest, context: RpcContext
    ) -> common_pb2.ModelInfo:
        served = self._core.served
        return convert.model_to_pb(served.id, served.calibration)
