"""A fake inference adapter for testing the embedder core without Triton."""

from __future__ import annotations

import dataclasses

import numpy as np

from imagesearch_embedder.model import ServedModel


class MeanColourModel:
    """Embeds an image as its mean colour, padded and normalised: easy to predict.

    A small red object on white is whitish whole and red once trimmed or cropped to it. It takes
    any input size and has a SALIENCY output (the image's redness), so localisation runs.
    """

    def __init__(self) -> None:
        self._served = ServedModel("fake", "1", -1, -1, 8, 32, saliency_size=(-1, -1))
        self.batches: list[int] = []
        self.versions_used: list[str] = []
        self._roll: tuple[str, int] | None = None

    def roll_to(self, version: str, after_reads: int) -> None:
        """Serve `version` once `served` has been read `after_reads` more times (a rollout)."""
        self._roll = (version, after_reads)

    @property
    def served(self) -> ServedModel:
        current = self._served
        if self._roll is not None:
            version, reads = self._roll
            self._roll = (version, reads - 1) if reads > 1 else None
            if reads <= 1:
                self._served = dataclasses.replace(self._served, version=version)
        return current

    async def embed(self, batch: np.ndarray, served: ServedModel) -> np.ndarray:
        self.batches.append(len(batch))
        self.versions_used.append(served.version)
        out = np.zeros((len(batch), 8), dtype=np.float32)
        out[:, :3] = batch.reshape(len(batch), -1, 3).mean(1) + 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    async def embed_with_saliency(self, batch: np.ndarray, served: ServedModel) -> tuple[np.ndarray, np.ndarray]:
        vectors = await self.embed(batch, served)
        image = batch.astype(np.float32)
        redness = image[..., 0] - image[..., 1:].mean(-1)  # (N, H, W)
        n, h, w = redness.shape
        maps = redness.reshape(n, h // 16, 16, w // 16, 16).mean((2, 4))  # stride 16, like SALIENCY
        return vectors, maps
