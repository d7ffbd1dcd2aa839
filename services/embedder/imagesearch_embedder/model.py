"""The model the embedder serves now: what Triton said about it, in plain types.

The Triton adapter is its one owner (it learns it at connect and follows a rollout in its health
check); the core reads it once per request and uses that snapshot throughout the request, for
the framing, the inference (pinned to that version) and the label on every vector it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagesearch.common.types import ModelId
from imagesearch.contracts.calibration import ScoreCalibration


@dataclass(frozen=True)
class ServedModel:
    name: str
    version: str
    # The input's fixed (height, width), or (-1, -1) when the model takes any size (multiples of 32).
    input_height: int
    input_width: int
    # Of EMBEDDING. The contract check leaves 0 when the config declares it -1 (each version has
    # its own); connecting fills it in from a probe inference.
    dimension: int
    max_batch_size: int
    # (h, w) of the optional SALIENCY output (where the model's activations are), used to
    # localise the product in a photo; None when the model has no such output.
    saliency_size: tuple[int, int] | None = None
    # The version's same-product calibration from the model config; None when it has none.
    calibration: ScoreCalibration | None = None

    @property
    def id(self) -> ModelId:
        return ModelId(name=self.name, version=self.version, dimension=self.dimension)

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        """The (height, width) the model insists on; None when it takes any size."""
        return (self.input_height, self.input_width) if self.input_height > 0 else None

    @property
    def can_localize(self) -> bool:
        return self.saliency_size is not None
