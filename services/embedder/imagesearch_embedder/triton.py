"""Adapter to Triton Inference Server: one long-lived asyncio gRPC client.

`connect()` checks that the served model honours the contract this service was
written against (UINT8 NHWC images in, FP32 vectors out), reading Triton's own
metadata and config rather than trusting our settings, and pins the version it
found so that every vector we return is labelled with the model that made it.
Each version has its own embedding dimension and score calibration: the config
declares EMBEDDING as [-1], so one probe inference tells the dimension, and the
config's `same_product_calibration_v<version>` parameter gives the calibration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from opentelemetry.sdk.trace import TracerProvider
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from imagesearch.common import balancing, deadline, keepalive
from imagesearch.common.breaker import PROBE_TIMEOUT_SECONDS, Breaker
from imagesearch.common.errors import DeadlineExceeded, DomainError, FailedPrecondition, ResourceExhausted, Unavailable
from imagesearch.common.metrics import UNTIMED
from imagesearch.common.types import Floats, Pixels
from imagesearch.contracts.model import (
    EMBEDDING,
    INPUT,
    INPUT_DATATYPE,
    MODEL_NAME,
    OUTPUT_DATATYPE,
    SALIENCY,
    calibration_of,
)
from imagesearch.imaging.framing import IMAGE_SIZE
from imagesearch_embedder.model import ServedModel

log = logging.getLogger(__name__)


T = TypeVar("T")


class ModelContractError(FailedPrecondition):
    """The model Triton serves is not one this service can drive; the message says what differs."""


def _dims(values: Sequence[Any]) -> list[int]:
    return [int(v) for v in values]


def _per_item(shape: list[int], max_batch: int) -> list[int]:
    """Metadata shapes include the batch dimension (-1) when max_batch_size > 0: drop it."""
    return shape[1:] if max_batch > 0 and shape[:1] == [-1] else shape


def _tensor(
    found: dict[str, Any], kind: str, name: str, datatype: str, max_batch: int, problems: list[str]
) -> tuple[list[int], list[int]] | None:
    """(shape, per-item shape) of a tensor the contract requires; None, with the problem noted, when absent."""
    tensor = found.get(name)
    if tensor is None:
        problems.append(f"no {kind} named {name} ({kind}s: {sorted(found) or 'none'})")
        return None
    if tensor.datatype != datatype:
        problems.append(f"{kind} {name} has datatype {tensor.datatype}, expected {datatype}")
    shape = _dims(tensor.shape)
    return shape, _per_item(shape, max_batch)


def check_contract(name: str, wanted_version: str, metadata: Any, config: Any) -> ServedModel:
    """Validate Triton's ModelMetadataResponse and ModelConfig; collect every mismatch in one message.

    Pure (takes the protobuf messages), so it is unit-testable without a server. An EMBEDDING
    declared [-1, -1] gives dimension 0: the caller learns it from an inference (see _probe).
    """
    problems: list[str] = []
    max_batch = int(config.max_batch_size)
    if max_batch <= 0:
        problems.append(f"max_batch_size is {max_batch}; the embedder batches images, so it must be > 0")

    height = width = dimension = 0
    image = _tensor({t.name: t for t in metadata.inputs}, "input", INPUT, INPUT_DATATYPE, max_batch, problems)
    if image is not None:
        shape, per_item = image
        dynamic = len(per_item) == 3 and per_item[:2] == [-1, -1]
        if len(per_item) != 3 or per_item[2] != 3 or not (dynamic or (per_item[0] > 0 and per_item[1] > 0)):
            problems.append(f"input {INPUT} has shape {shape}, expected [-1, H, W, 3] (NHWC; H and W fixed or both -1)")
        else:
            height, width = per_item[0], per_item[1]  # -1, -1: the model takes any size

    outputs = {t.name: t for t in metadata.outputs}
    embedding = _tensor(outputs, "output", EMBEDDING, OUTPUT_DATATYPE, max_batch, problems)
    if embedding is not None:
        shape, per_item = embedding
        if per_item == [-1]:
            dimension = 0  # each version has its own: connect() learns it from a probe inference
        elif len(per_item) != 1 or per_item[0] <= 0:
            problems.append(
                f"output {EMBEDDING} has shape {shape}, expected [-1, D] (D fixed, or -1 to learn it by inference)"
            )
        else:
            dimension = per_item[0]

    saliency_size = None
    saliency = outputs.get(SALIENCY)
    if saliency is not None:  # optional: without it, localisation is simply off
        shape = _dims(saliency.shape)
        per_item = _per_item(shape, max_batch)
        if saliency.datatype == OUTPUT_DATATYPE and len(per_item) == 2 and (min(per_item) > 0 or per_item == [-1, -1]):
            saliency_size = (per_item[0], per_item[1])

    versions = sorted(metadata.versions, key=lambda v: (len(v), v))  # numeric order for digit strings
    if wanted_version and wanted_version not in versions:
        problems.append(f"version {wanted_version} is not served (versions: {versions or 'none'})")
    if not versions:
        problems.append("Triton lists no version of it")
    version = wanted_version or (versions[-1] if versions else "")
    calibration = None
    try:
        calibration = calibration_of(config, version) if version else None
    except ValueError as err:
        problems.append(str(err))
    if problems:
        raise ModelContractError(f"model {name!r} does not match the embedder's contract: " + "; ".join(problems))
    return ServedModel(
        name=name,
        version=version,
        input_height=height,
        input_width=width,
        dimension=dimension,
        max_batch_size=max_batch,
        saliency_size=saliency_size,
        calibration=calibration,
    )


@dataclass(frozen=True)
class TritonOptions:
    """Where the model is served and how long to wait (the embedder's TRITON_* settings, by name)."""

    triton_url: str
    triton_model: str = MODEL_NAME
    triton_model_version: str = ""  # "" = the newest version Triton serves, followed through rollouts
    triton_timeout_seconds: float = 10.0
    # The probe's image side when the model takes any input size (a fixed H and W win).
    image_size: int = IMAGE_SIZE


class TritonEmbedder:
    """Embeds preprocessed uint8 NHWC batches with a Triton model."""

    def __init__(self, options: TritonOptions, tracer_provider: TracerProvider) -> None:
        o = options
        self._url, self._model_name, self._wanted_version = o.triton_url, o.triton_model, o.triton_model_version
        self._timeout, self._probe_size = o.triton_timeout_seconds, o.image_size
        self._tracer = tracer_provider.get_tracer("imagesearch_embedder.triton")
        self._client: InferenceServerClient | None = None
        self._served: ServedModel | None = None
        self.breaker = Breaker(f"triton at {self._url}")
        self.calls = UNTIMED  # the service's Triton timer, once it has metrics (EmbedderBackend.register_metrics)
        self._probe_timeout = min(self._timeout, PROBE_TIMEOUT_SECONDS)

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Open the client; raise if Triton or the model is not ready, or the model breaks the contract."""
        if self._client is None:
            self._client = InferenceServerClient(
                self._url,
                channel_args=[
                    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
                    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
                    *keepalive.client_options(),
                    # Spread over every Triton pod the URL names (dns:/// on a headless Service).
                    # No retries: Triton answers UNAVAILABLE when its queue is full too, and a
                    # retry would add to the load that filled it.
                    *balancing.client_options(),
                ],
            )
        try:
            self._served = await self._resolve(self._client)
        except BaseException:
            await self.close()  # ServiceServer retries connect(); do not leak a channel per attempt
            raise
        c = self._served
        log.info(
            "triton at %s serves %s version %s: input %dx%dx3 uint8, %d-d embeddings, max batch %d, "
            "same-product calibration %s",
            self._url,
            c.name,
            c.version,
            c.input_height,
            c.input_width,
            c.dimension,
            c.max_batch_size,
            f"{c.calibration.slope:g},{c.calibration.intercept:g}"
            if c.calibration
            else "none (the gateway's fallback)",
        )

    async def check(self) -> None:
        """Cheap readiness probe of the version in use.

        When no version is pinned by configuration and the one in use went away
        (a rollout), adopt the version Triton serves now if it honours the
        contract; `served` then reports it, so callers can tell vectors apart.
        """
        client, contract = self._require()
        ready = client.is_model_ready(contract.name, contract.version, client_timeout=self._probe_timeout)
        if await self._call(ready):
            return
        if self._wanted_version:
            raise Unavailable(f"triton at {self._url}: model {contract.name!r} version {contract.version} is not ready")
        latest = await self._resolve(client)
        log.warning(
            "triton at %s: model %s version %s is gone; now serving version %s",
            self._url,
            contract.name,
            contract.version,
            latest.version,
        )
        self._served = latest

    async def _resolve(self, client: InferenceServerClient) -> ServedModel:
        """Readiness, then the contract as Triton itself describes the model."""
        name, version, timeout = self._model_name, self._wanted_version, self._timeout
        if not await self._call(client.is_server_ready(client_timeout=timeout)):
            raise Unavailable(f"triton at {self._url} is not ready")
        if not await self._call(client.is_model_ready(name, version, client_timeout=timeout)):
            raise Unavailable(
                f"triton at {self._url} has no ready model {name!r}" + (f" version {version}" if version else "")
            )
        metadata = await self._call(client.get_model_metadata(name, version, client_timeout=timeout))
        config = await self._call(client.get_model_config(name, version, client_timeout=timeout))
        return await self._probe(client, check_contract(name, version, metadata, config.config))

    async def _probe(self, client: InferenceServerClient, c: ServedModel) -> ServedModel:
        """One inference of a black image: the embedding dimension, as the model itself answers.

        The config declares EMBEDDING [-1] (each version has its own dimension), so this is
        where the dimension comes from; a dimension fixed in the metadata is checked against
        it. It also warms up the whole path (channel, Triton's scheduler, the backend) before
        the service reports SERVING, so the first real request does not pay for it.
        """
        height, width = (c.input_height, c.input_width) if c.input_height > 0 else (self._probe_size, self._probe_size)
        image = InferInput(INPUT, [1, height, width, 3], INPUT_DATATYPE)
        image.set_data_from_numpy(np.zeros((1, height, width, 3), dtype=np.uint8))
        result = await self._call(
            client.infer(
                c.name,
                [image],
                model_version=c.version,
                outputs=[InferRequestedOutput(EMBEDDING)],
                client_timeout=self._timeout,
            )
        )
        vectors = result.as_numpy(EMBEDDING)
        got = None if vectors is None else tuple(vectors.shape)
        what = f"model {c.name!r} version {c.version}: a probe inference of one {height}x{width} image"
        if got is None or len(got) != 2 or got[0] != 1 or got[1] <= 0:
            raise ModelContractError(f"{what} returned {EMBEDDING} of shape {got}, expected (1, D)")
        if c.dimension and got[1] != c.dimension:
            raise ModelContractError(
                f"{what} returned {got[1]}-d {EMBEDDING} but Triton's metadata declares {c.dimension}-d"
            )
        return dataclasses.replace(c, dimension=got[1])

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # ------------------------------------------------------------------ the served model

    @property
    def served(self) -> ServedModel:
        """The model served now (UNAVAILABLE before connect); read it once per request."""
        return self._require()[1]

    @property
    def served_or_none(self) -> ServedModel | None:
        """The model served now, or None before connect (for /metrics, which must never raise)."""
        return self._served

    # ------------------------------------------------------------------ inference

    async def embed(self, batch: Pixels, served: ServedModel) -> Floats:
        """(N, H, W, 3) uint8 -> (N, D) float32 with exactly `served`'s version, in chunks of its
        max batch size sent concurrently. A version Triton no longer serves fails UNAVAILABLE."""
        vectors, _ = await self.embed_with_saliency(batch, served, want_saliency=False)
        return vectors

    async def embed_with_saliency(
        self, batch: Pixels, served: ServedModel, want_saliency: bool = True
    ) -> tuple[Floats, Floats | None]:
        """Like embed(), plus the (N, h, w) SALIENCY maps when asked for and the model has them."""
        client, c = self._require()[0], served
        want_saliency = want_saliency and c.saliency_size is not None
        fixed = c.input_height > 0
        expected = (c.input_height, c.input_width, 3) if fixed else (batch.shape[1], batch.shape[2], 3)
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(f"expected a uint8 batch of shape (N, {expected}), got {batch.dtype} {batch.shape}")
        if len(batch) == 0:
            return np.empty((0, c.dimension), dtype=np.float32), None
        chunks = [batch[i : i + c.max_batch_size] for i in range(0, len(batch), c.max_batch_size)]
        results = await _gather_or_cancel([self._infer(client, c, chunk, want_saliency) for chunk in chunks])
        vectors = np.concatenate([r[0] for r in results], axis=0)
        maps = np.concatenate([r[1] for r in results], axis=0) if want_saliency else None
        return vectors, maps

    async def _infer(
        self, client: InferenceServerClient, c: ServedModel, chunk: Pixels, want_saliency: bool
    ) -> tuple[Floats, Floats | None]:
        with self._tracer.start_as_current_span(
            "triton.infer",
            attributes={
                "triton.url": self._url,
                "triton.model.name": c.name,
                "triton.model.version": c.version,
                "triton.batch_size": len(chunk),
            },
        ):
            self.breaker.check()  # Triton known to be down: fail now, not after the deadline
            timeout = deadline.bounded(self._timeout, f"triton at {self._url}")
            image = InferInput(INPUT, list(chunk.shape), INPUT_DATATYPE)
            image.set_data_from_numpy(np.ascontiguousarray(chunk))
            # A failure is recorded on the span (exception event + ERROR status) by start_as_current_span.
            with self.calls.timed("infer"):
                result = await self._call(
                    client.infer(
                        c.name,
                        [image],
                        model_version=c.version,
                        outputs=[InferRequestedOutput(EMBEDDING)]
                        + ([InferRequestedOutput(SALIENCY)] if want_saliency else []),
                        client_timeout=timeout,
                    ),
                    cut_by_caller=timeout < self._timeout,
                )
            vectors = result.as_numpy(EMBEDDING)
            if vectors is None or vectors.shape != (len(chunk), c.dimension):
                got = None if vectors is None else vectors.shape
                raise DomainError(
                    f"triton model {c.name!r} returned {EMBEDDING} of shape {got}, expected {(len(chunk), c.dimension)}"
                )
            maps = None
            if want_saliency:
                maps = result.as_numpy(SALIENCY)
                if maps is None or maps.ndim != 3 or len(maps) != len(chunk):
                    raise DomainError(f"triton model {c.name!r} returned {SALIENCY} of an unexpected shape")
            return vectors.astype(np.float32, copy=False), maps

    # ------------------------------------------------------------------ helpers

    def _require(self) -> tuple[InferenceServerClient, ServedModel]:
        if self._client is None or self._served is None:
            raise Unavailable(f"embedder is starting: waiting for model {self._model_name!r} on triton at {self._url}")
        return self._client, self._served

    async def _call(self, awaitable: Awaitable[T], cut_by_caller: bool = False) -> T:
        """Await a tritonclient call, translating its exceptions into DomainErrors that name Triton;
        the breaker learns from every answer (not from a timeout our caller's deadline imposed)."""
        try:
            result = await awaitable
        except InferenceServerException as err:
            mapped = self._map_error(err)
            self.breaker.record(mapped, cut_by_caller)
            raise mapped from None
        self.breaker.succeeded()
        return result

    def _map_error(self, err: InferenceServerException) -> DomainError:
        status = err.status() or ""
        message = err.message() or str(err)
        if _OVERLOADED in message or _QUEUE_TIMEOUT in message.lower() or status.endswith("RESOURCE_EXHAUSTED"):
            # Triton's queue policy (model_repo/*/config.pbtxt) refused or expired the request:
            # a back-off signal for the caller, not an outage.
            return ResourceExhausted(f"triton at {self._url} is overloaded (its queue is full); retry with back-off")
        if status.endswith("DEADLINE_EXCEEDED"):
            return DeadlineExceeded(f"triton at {self._url} did not answer in time")
        if status.endswith(("UNAVAILABLE", "CANCELLED")):
            return Unavailable(f"triton unavailable at {self._url}: {message}")
        if status.endswith(("NOT_FOUND",)) or "unknown model" in message.lower():
            return Unavailable(f"triton at {self._url} does not serve model {self._model_name!r}: {message}")
        # Anything else (INVALID_ARGUMENT, INTERNAL, ...) is a bug or a broken model, not the caller's fault.
        return DomainError(f"triton at {self._url} failed: {status or 'error'}: {message}")


# What Triton's dynamic batcher says when its queue policy refuses a request (queue full) or
# drops it (waited past default_timeout_microseconds).
_OVERLOADED = "Exceeds maximum queue size"
_QUEUE_TIMEOUT = "request timeout expired"


async def _gather_or_cancel(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """asyncio.gather that cancels the siblings when one fails (what TaskGroup does on 3.11+)."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
