"""The embedder's use case: a batch of encoded images in, one vector or one rejection per image out.

No gRPC here: the servicer converts messages, the Triton adapter does inference.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import NamedTuple, Protocol

import numpy as np
from opentelemetry import trace

from imagesearch.common.errors import InvalidArgument, Unavailable
from imagesearch.common.types import ModelId, Region
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch_embedder.imaging import Decoded, ImageErrorReason, ImageRejected, Limits, Preprocessor, ResizeMode
from imagesearch_embedder.localize import subject_box
from imagesearch_embedder.settings import EmbedderSettings


class ImageItem(NamedTuple):
    """One image to embed, and how to frame it. A plain (bytes, region) tuple reads as one too."""

    content: bytes  # encoded image
    region: Region | None = None  # region of interest, relative, displayed coordinates
    localize: bool = False  # find the product in a busy photo first (see localize.py)
    trim_to_object: bool = False  # catalog shot on a plain background: crop to the object (imaging.object_box)

    def framing(self, can_localize: bool) -> ImageItem:
        """The flags that apply: a caller's region wins over both; trimming wins over localising."""
        if self.region is not None:
            return self._replace(localize=False, trim_to_object=False)
        if self.trim_to_object:
            return self._replace(localize=False)
        return self._replace(localize=self.localize and can_localize)


class Embedder(Protocol):
    """What the core needs from the inference adapter (TritonEmbedder, or a fake in tests)."""

    @property
    def model(self) -> ModelId: ...

    @property
    def calibration(self) -> ScoreCalibration | None: ...

    @property
    def input_size(self) -> tuple[int, int]: ...

    async def embed(self, batch: np.ndarray) -> np.ndarray: ...


def _preprocess_one(
    preprocess: Preprocessor, locate: Preprocessor, item: ImageItem
) -> np.ndarray | tuple[np.ndarray, Decoded] | ImageRejected:
    """Runs in the thread pool. Only ImageRejected is per-image; anything else is our bug and fails the call.

    For an image to localise: the whole photo letterboxed at the localisation size
    (the first pass), and the decoded image kept for the second pass.
    """
    try:
        if item.trim_to_object:
            return preprocess.trimmed_to_object(item.content)
        if not item.localize:
            return preprocess(item.content, item.region)
        decoded = locate.decode(item.content)
        return locate.frame(decoded, (0.0, 0.0, 1.0, 1.0), ResizeMode.PAD), decoded
    except ImageRejected as rejected:
        return rejected


def _localized_view(preprocess: Preprocessor, decoded: Decoded, saliency: np.ndarray) -> np.ndarray:
    box = subject_box(saliency, decoded.image.width, decoded.image.height)
    return preprocess.frame(decoded, box, ResizeMode.PAD)


class EmbedderCore:
    def __init__(
        self,
        embedder: Embedder,
        settings: EmbedderSettings,
        executor: Executor,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._embedder = embedder
        self._settings = settings
        self._executor = executor
        self._tracer = tracer or trace.NoOpTracer()
        # Snapshots: the preprocessing and the label of every vector belong to this model.
        self._model = embedder.model
        self._calibration = embedder.calibration  # belongs to this model version, like the label
        self._input_size = embedder.input_size
        self._preprocess = Preprocessor(
            limits=Limits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_pixels),
            size=self._input_size,
            mode=ResizeMode(settings.resize_mode),
        )
        # The localisation pass looks at a larger letterboxed photo when the model allows it. No
        # JPEG draft scaling there: the second pass crops this decode, often to a small part of it.
        self._locate = dataclasses.replace(
            self._preprocess,
            size=getattr(embedder, "localize_input_size", self._input_size),
            mode=ResizeMode.PAD,
            use_draft=False,
        )

    @property
    def model(self) -> ModelId:
        return self._model

    @property
    def calibration(self) -> ScoreCalibration | None:
        """The model's same-product calibration, reported beside `model`; None when it carries none."""
        return self._calibration

    @property
    def input_size(self) -> tuple[int, int]:
        return self._input_size

    def check_request(self, count: int) -> None:
        """Request-level limits, checked before any image is looked at."""
        limit = self._settings.max_batch_images
        if count == 0:
            raise InvalidArgument(f"the request has no images; send between 1 and {limit}")
        if count > limit:
            raise InvalidArgument(
                f"the request has {count} images; the limit is {limit} per request, split it into smaller batches"
            )

    async def embed_images(self, items: Sequence[ImageItem | ImageRejected]) -> list[np.ndarray | ImageRejected]:
        """One result per item, in order: an L2-normalised float32 vector, or why that image was rejected.

        An item may already be an ImageRejected (the servicer rejects a malformed
        region while converting); it keeps its slot and is passed through.
        """
        results, _ = await self.embed_images_with_whole(items)
        return results

    async def embed_images_with_whole(
        self, items: Sequence[ImageItem | ImageRejected]
    ) -> tuple[list[np.ndarray | ImageRejected], dict[int, np.ndarray]]:
        """embed_images(), plus the whole photo's vector of every localised item, by position.

        The localisation pass embeds the whole photo anyway: returning it costs nothing, and
        lets the caller hedge when the crop may have missed the product.
        """
        self.check_request(len(items))
        wholes: dict[int, np.ndarray] = {}
        decoded = await self._decode_all(items)
        kept: dict[int, Decoded] = {}
        first_pass: dict[int, np.ndarray] = {}
        for i, outcome in enumerate(decoded):
            if isinstance(outcome, tuple):  # an image to localise: (first-pass view, decoded image)
                first_pass[i], kept[i] = outcome
        plain = [i for i, outcome in enumerate(decoded) if isinstance(outcome, np.ndarray)]
        results: list[np.ndarray | ImageRejected] = [
            outcome if not isinstance(outcome, tuple) else outcome[0] for outcome in decoded
        ]
        if not plain and not kept:
            return results, wholes
        if self._embedder.model != self._model:
            # Triton rolled to another version while we decoded: never label its vectors with ours.
            raise Unavailable(f"the model changed from version {self._model.version} during the request; retry")

        async def embed_plain() -> np.ndarray | None:
            # One Triton request for these images; the adapter splits it by the model's max batch size.
            return await self._embedder.embed(np.stack([decoded[i] for i in plain])) if plain else None  # type: ignore[misc]

        async def first_pass_maps() -> tuple[np.ndarray, np.ndarray | None] | None:
            if not kept:
                return None
            return await self._embedder.embed_with_saliency(np.stack(list(first_pass.values())))  # type: ignore[attr-defined]

        vectors, located = await asyncio.gather(embed_plain(), first_pass_maps())
        for row, index in enumerate(plain):
            results[index] = self._checked_vector(vectors[row])  # type: ignore[index]
        if located is not None:
            whole, maps = located
            for row, index in enumerate(first_pass):
                # The whole photo's vector stands if localisation cannot improve on it.
                results[index] = self._checked_vector(whole[row])
                if isinstance(results[index], np.ndarray):
                    wholes[index] = results[index]  # type: ignore[assignment]
            if maps is not None:
                await self._localize(results, kept, {index: maps[row] for row, index in enumerate(first_pass)})
        return results, wholes

    async def _localize(
        self, results: list[np.ndarray | ImageRejected], kept: dict[int, Decoded], maps: dict[int, np.ndarray]
    ) -> None:
        """Second pass: re-embed each photo cropped to where its saliency map says the product is."""
        loop = asyncio.get_running_loop()
        order = [i for i in kept if i in maps and isinstance(results[i], np.ndarray)]
        if not order:
            return
        with self._tracer.start_as_current_span("embedder.localize", attributes={"images": len(order)}):
            views = await asyncio.gather(
                *(
                    loop.run_in_executor(self._executor, _localized_view, self._preprocess, kept[i], maps[i])
                    for i in order
                )
            )
            vectors = await self._embedder.embed(np.stack(views))
        for row, index in enumerate(order):
            results[index] = self._checked_vector(vectors[row])

    async def _decode_all(
        self, items: Sequence[ImageItem | ImageRejected]
    ) -> list[np.ndarray | tuple[np.ndarray, Decoded] | ImageRejected]:
        loop = asyncio.get_running_loop()

        can_localize = bool(getattr(self._embedder, "can_localize", False))

        async def decode(item: ImageItem | ImageRejected) -> np.ndarray | tuple[np.ndarray, Decoded] | ImageRejected:
            if isinstance(item, ImageRejected):
                return item
            framed = ImageItem(*item).framing(can_localize)
            return await loop.run_in_executor(self._executor, _preprocess_one, self._preprocess, self._locate, framed)

        with self._tracer.start_as_current_span("embedder.decode", attributes={"images": len(items)}) as span:
            outcomes = await asyncio.gather(*(decode(item) for item in items))
            span.set_attribute("images.rejected", sum(isinstance(o, ImageRejected) for o in outcomes))
        return list(outcomes)

    @staticmethod
    def _checked_vector(vector: np.ndarray) -> np.ndarray | ImageRejected:
        # A NaN/inf vector would poison the index and every score computed with it.
        if not np.all(np.isfinite(vector)):
            return ImageRejected(
                ImageErrorReason.UNSPECIFIED, "the model produced a non-finite embedding for this image"
            )
        return vector
