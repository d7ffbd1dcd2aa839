"""A fake inference adapter for testing the embedder core without Triton."""

from __future__ import annotations

import numpy as np

from imagesearch.common.types import ModelId


class MeanColourModel:
    """Embeds an image as its mean colour, padded and normalised: easy to predict.

    A small red object on white is whitish whole and red once trimmed or cropped to it.
    """

    def __init__(self) -> None:
        self.model = ModelId("fake", "1", 8)
        self.calibration = None
        self.input_size = (32, 32)
        self.batches: list[int] = []

    async def embed(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(len(batch))
        out = np.zeros((len(batch), 8), dtype=np.float32)
        out[:, :3] = batch.reshape(len(batch), -1, 3).mean(1) + 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)
