"""The embedder's use case: a batch of encoded images in, one vector or one rejection per image out.

No gRPC here: the servicer converts messages, the Triton adapter does inference. A request reads
the served model once and keeps that snapshot throughout: it frames for that model's input size,
infers with exactly that version (pinned, so a rollout mid-request fails it UNAVAILABLE rather
than mixing versions) and labels every vector with it.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, TypeVar, cast

import numpy as np
from opentelemetry import trace

from imagesearch.common.budget import Budget, Ledger, mib
from imagesearch.common.errors import InvalidArgument, ResourceExhausted
from imagesearch.common.types import Floats, ImageErrorReason, ModelId, Pixels, Region
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.contracts.limits import MAX_IMAGES_PER_EMBED_REQUEST
from imagesearch.imaging.decode import WHOLE, Decoded, RelativeBox, ResizeMode, relative_region
from imagesearch.imaging.detect import FoundObject, find_objects
from imagesearch.imaging.errors import ImageRejected
from imagesearch.imaging.framing import IMAGE_SIZE, LOCALIZE_SIZE, Framing
from imagesearch.imaging.localize import subject_box_in
from imagesearch.imaging.popout import popout_box
from imagesearch.imaging.sniff import Limits
from imagesearch_embedder.model import ServedModel

_T = TypeVar("_T")


class ImageItem(NamedTuple):
    """One image to embed, and how to frame it. A plain (bytes, region) tuple reads as one too."""

    content: bytes  # encoded image
    region: Region | None = None  # region of interest, relative, displayed coordinates
    localize: bool = False  # find the product in a busy photo first (imagesearch.imaging.localize)
    trim_to_object: bool = False  # catalog shot on a plain background: crop to the object (imaging.objects)
    detect_objects: bool = False  # with localize: every object in the photo too (imaging.detect)
    localize_in_region: bool = False  # with region: find the product inside it (a zoomed look)

    def framing(self, can_localize: bool) -> ImageItem:
        """The flags that apply: a caller's region wins over all (it is searched as given, or
        localised inside when asked); trimming wins over localising."""
        if self.region is not None:
            inside = self.localize_in_region and can_localize
            return self._replace(localize=inside, trim_to_object=False, detect_objects=False)
        if self.trim_to_object:
            return self._replace(localize=False, detect_objects=False)
        localize = self.localize and can_localize
        return self._replace(localize=localize, detect_objects=self.detect_objects and localize)


class Inference(Protocol):
    """What the core needs from the inference adapter (TritonEmbedder, or a fake in tests)."""

    @property
    def served(self) -> ServedModel: ...

    async def embed(self, batch: Pixels, served: ServedModel) -> Floats: ...

    async def embed_with_saliency(self, batch: Pixels, served: ServedModel) -> tuple[Floats, Floats | None]: ...


@dataclass(frozen=True)
class EmbedOptions:
    max_batch_images: int = MAX_IMAGES_PER_EMBED_REQUEST
    limits: Limits = field(default_factory=Limits)
    resize_mode: ResizeMode = ResizeMode.CROP
    # Used when the model takes any input size; a model with fixed H and W imposes its own.
    image_size: int = IMAGE_SIZE
    localize_size: int = LOCALIZE_SIZE
    # Decoded pixels held at once by all requests (imaging.decode.decode_cost); above it a request
    # fails RESOURCE_EXHAUSTED at once instead of growing the process towards its memory limit.
    decode_memory_bytes: int = 1024 * 1024 * 1024


@dataclass(frozen=True)
class ObjectView:
    """An object found in a photo, and the vector of its crop."""

    box: RelativeBox
    salience: float
    vector: Floats


@dataclass(frozen=True)
class Embedded:
    """One result per item, in order; the whole photo's vector of every localised item, by position;
    and the model that made every vector, with its calibration. For each localised item the box
    its vector was cropped to, and for each that asked, every object found (the main one first).
    For each localised whole photo, its most conspicuous part (imaging.popout), unless that is all of it."""

    results: list[Floats | ImageRejected]
    wholes: dict[int, Floats]
    model: ModelId
    calibration: ScoreCalibration | None
    boxes: dict[int, RelativeBox] = field(default_factory=dict)
    objects: dict[int, list[ObjectView]] = field(default_factory=dict)
    popouts: dict[int, RelativeBox] = field(default_factory=dict)


class Located(NamedTuple):
    """A photo to localise: its first-pass view, the decoded photo (kept for the second pass), the
    part of it the first pass looked at (the whole photo, or a caller's region), and whether every
    object in it is wanted (never for a region: ImageItem.framing)."""

    view: Pixels
    photo: Decoded
    part: RelativeBox
    detect_objects: bool


FirstPass = Pixels | Located | ImageRejected


def _first_pass(framing: Framing, ledger: Ledger, item: ImageItem, photo: Decoded | None) -> FirstPass:
    """Runs in the thread pool. Only ImageRejected is per-image; anything else fails the call:
    ResourceExhausted when the decode-memory budget cannot hold this image now, else our bug.

    For an image to localise (`photo`: its decoded photo, _decoded_photo): the whole photo (or the
    region to localise in) letterboxed at the localisation size (the first pass), and the photo
    kept for the second (its reservation lasts the request).
    """
    with ledger.working():
        try:
            if item.trim_to_object:
                return framing.trimmed(item.content, ledger.reserve)
            if photo is None:
                return framing.plain(item.content, item.region, ledger.reserve)
            part = relative_region(item.region)
            return Located(framing.whole_photo(photo, part), photo, part, item.detect_objects)
        except ImageRejected as rejected:
            return rejected


def _decoded_photo(framing: Framing, ledger: Ledger, content: bytes) -> Decoded | ImageRejected:
    """Runs in the thread pool: a photo to localise, at full resolution (the crop may be a small
    part of it), reserved on the request's ledger."""
    with ledger.working():
        try:
            return framing.decode_photo(content, ledger.reserve)
        except ImageRejected as rejected:
            return rejected


class EmbedderCore:
    def __init__(
        self, inference: Inference, options: EmbedOptions, executor: Executor, tracer: trace.Tracer | None = None
    ) -> None:
        self._inference = inference
        self._options = options
        self._executor = executor
        self._tracer = tracer or trace.NoOpTracer()
        self._framings: dict[tuple[int, int] | None, Framing] = {}
        self.decode_memory = Budget(options.decode_memory_bytes, "embedder: decode memory", mib)
        # Read by the service's /metrics.
        self.rejected: Counter[str] = Counter()  # images refused, by reason (lower case)
        self.decodes_in_flight = 0

    @property
    def served(self) -> ServedModel:
        """The model served now (UNAVAILABLE until the adapter has connected)."""
        return self._inference.served

    def check_request(self, count: int) -> None:
        """Request-level limits, checked before any image is looked at."""
        limit = self._options.max_batch_images
        if count == 0:
            raise InvalidArgument(f"the request has no images; send between 1 and {limit}")
        if count > limit:
            raise InvalidArgument(
                f"the request has {count} images; the limit is {limit} per request, split it into smaller batches"
            )

    def _framing(self, served: ServedModel) -> Framing:
        """How to frame for this model: its fixed input size, else the configured sizes."""
        fixed = served.fixed_size
        if fixed not in self._framings:
            o = self._options
            self._framings[fixed] = Framing(
                limits=o.limits,
                size=fixed or (o.image_size, o.image_size),
                locate_size=fixed or (o.localize_size, o.localize_size),
                mode=o.resize_mode,
            )
        return self._framings[fixed]

    async def embed(self, items: Sequence[ImageItem | ImageRejected]) -> Embedded:
        """Embed each item; an item may already be an ImageRejected (the servicer rejects a malformed
        region while converting): it keeps its slot and is passed through.

        The localisation pass embeds the whole photo anyway: returning its vector costs nothing,
        and lets the caller hedge when the crop may have missed the product.
        """
        self.check_request(len(items))
        served = self._inference.served
        with self.decode_memory.ledger() as ledger:
            embedded = await self._embed(items, served, ledger)
        self.rejected.update(r.reason.name.lower() for r in embedded.results if isinstance(r, ImageRejected))
        return embedded

    async def _embed(self, items: Sequence[ImageItem | ImageRejected], served: ServedModel, ledger: Ledger) -> Embedded:
        framing = self._framing(served)
        decoded = await self._decode_all(items, framing, ledger, served.can_localize)
        rejected = {i: o for i, o in enumerate(decoded) if isinstance(o, ImageRejected)}
        plain = {i: o for i, o in enumerate(decoded) if isinstance(o, np.ndarray)}
        located = {i: o for i, o in enumerate(decoded) if isinstance(o, Located)}
        results: dict[int, Floats | ImageRejected] = dict(rejected)
        wholes: dict[int, Floats] = {}
        boxes: dict[int, RelativeBox] = {}
        objects: dict[int, list[ObjectView]] = {}
        popouts: dict[int, RelativeBox] = {}

        async def embed_plain() -> Floats | None:
            # One Triton request for these images; the adapter splits it by the model's max batch size.
            return await self._inference.embed(np.stack(list(plain.values())), served) if plain else None

        async def first_pass() -> tuple[Floats, Floats | None] | None:
            if not located:
                return None
            return await self._inference.embed_with_saliency(np.stack([o.view for o in located.values()]), served)

        vectors, passed = await asyncio.gather(embed_plain(), first_pass())
        if vectors is not None:
            results.update((index, _checked(vectors[row])) for row, index in enumerate(plain))
        if passed is not None:
            whole, maps = passed
            for row, index in enumerate(located):
                # The whole photo's vector stands if localisation cannot improve on it.
                results[index] = vector = _checked(whole[row])
                if isinstance(vector, np.ndarray):
                    wholes[index] = vector
            if maps is not None:
                photos = {index: o for index, o in located.items() if index in wholes}
                saliency = {index: maps[row] for row, index in enumerate(located) if index in wholes}
                detect = {index for index, o in photos.items() if o.detect_objects}
                localised = await self._localize(photos, saliency, detect, framing, served, ledger)
                for index, (found, popout) in localised.items():
                    main = found[0]
                    results[index], boxes[index] = _checked(main.vector), main.box
                    if index in detect:
                        objects[index] = [o for o in found if np.isfinite(o.vector).all()]
                    if popout is not None:
                        popouts[index] = popout
        return Embedded(
            [results[i] for i in range(len(decoded))], wholes, served.id, served.calibration, boxes, objects, popouts
        )

    async def _localize(
        self,
        photos: dict[int, Located],
        maps: dict[int, Floats],
        detect: set[int],
        framing: Framing,
        served: ServedModel,
        ledger: Ledger,
    ) -> dict[int, tuple[list[ObjectView], RelativeBox | None]]:
        """Second pass: re-embed each photo cropped to where its saliency map says the product is
        (and, where asked, to every other object found too), all crops in one batch; and each whole
        photo's most conspicuous part, found from its pixels while the batch is framed."""
        if not photos:
            return {}
        loop = asyncio.get_running_loop()
        order = list(photos)

        def boxes_of(index: int) -> list[FoundObject]:
            (_, photo, part, _), saliency = photos[index], maps[index]
            if index in detect:
                return find_objects(photo.image, saliency)
            return [FoundObject(subject_box_in(saliency, photo.image.width, photo.image.height, part), 1.0)]

        def conspicuous(photo: Decoded) -> RelativeBox | None:
            """The photo's pixel-only second guess; none where the decode budget cannot hold its grey
            copy now (it is an extra, not worth failing the request for) or nothing stands out."""
            with ledger.working():
                try:
                    box = popout_box(photo.image, ledger.reserve)
                except ResourceExhausted:
                    return None
            return None if box == WHOLE else box

        def crops(index: int) -> tuple[list[FoundObject], list[Pixels], RelativeBox | None]:
            found = boxes_of(index)
            photo, part = photos[index].photo, photos[index].part
            popout = conspicuous(photo) if part == WHOLE else None
            return found, [framing.box(photo, o.box) for o in found], popout

        with self._tracer.start_as_current_span("embedder.localize", attributes={"images": len(order)}) as span:
            framed = await asyncio.gather(*(loop.run_in_executor(self._executor, crops, i) for i in order))
            views = [view for _, item_views, _ in framed for view in item_views]
            span.set_attribute("crops", len(views))
            vectors = await self._inference.embed(np.stack(views), served)
        out: dict[int, tuple[list[ObjectView], RelativeBox | None]] = {}
        row = 0
        for index, (found, _, popout) in zip(order, framed):
            out[index] = [ObjectView(o.box, o.salience, vectors[row + k]) for k, o in enumerate(found)], popout
            row += len(found)
        return out

    async def _decode_all(
        self, items: Sequence[ImageItem | ImageRejected], framing: Framing, ledger: Ledger, can_localize: bool
    ) -> list[FirstPass]:
        loop = asyncio.get_running_loop()
        # A photo localised several times over (the gateway's zoom tiles: four regions of one photo)
        # is decoded once: one decode's time and one reservation for all of them.
        photos: dict[bytes, asyncio.Future[Decoded | ImageRejected]] = {}

        async def in_pool(work: functools.partial[_T]) -> _T:
            self.decodes_in_flight += 1
            try:
                return await loop.run_in_executor(self._executor, work)
            finally:
                self.decodes_in_flight -= 1

        async def decode(item: ImageItem | ImageRejected) -> FirstPass:
            if isinstance(item, ImageRejected):
                return item
            item = ImageItem(*item).framing(can_localize)
            if not item.localize:
                return await in_pool(functools.partial(_first_pass, framing, ledger, item, None))
            if item.content not in photos:
                photos[item.content] = asyncio.ensure_future(
                    in_pool(functools.partial(_decoded_photo, framing, ledger, item.content))
                )
            photo = await photos[item.content]
            if isinstance(photo, ImageRejected):
                return photo
            return await in_pool(functools.partial(_first_pass, framing, ledger, item, photo))

        with self._tracer.start_as_current_span("embedder.decode", attributes={"images": len(items)}) as span:
            # Every decode runs to its end before the request fails: what a thread decodes is
            # accounted until the thread is done with it.
            outcomes = await asyncio.gather(*(decode(item) for item in items), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException) and not isinstance(outcome, ImageRejected):
                    raise outcome
            span.set_attribute("images.rejected", sum(isinstance(o, ImageRejected) for o in outcomes))
            span.set_attribute("photos.decoded", len(photos))
        return cast(list[FirstPass], outcomes)  # only ImageRejected is left among the exceptions


def _checked(vector: Floats) -> Floats | ImageRejected:
    # A NaN/inf vector would poison the index and every score computed with it.
    if not np.all(np.isfinite(vector)):
        return ImageRejected(ImageErrorReason.UNSPECIFIED, "the model produced a non-finite embedding for this image")
    return vector
