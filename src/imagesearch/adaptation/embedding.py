"""The base model, run in-process with onnxruntime, and the embedder's own framing.

`imagesearch adapt` embeds thousands of synthetic views once, offline: calling
onnxruntime directly avoids needing a running stack. The pixels must be exactly
what the embedder service would send to Triton, so framing goes through the
same `imagesearch.imaging.framing.Framing` the service uses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imagesearch.common.types import Floats, Pixels
from imagesearch.contracts.model import EMBEDDING, INPUT
from imagesearch.imaging.decode import ResizeMode
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.sniff import Limits


class BaseModel:
    """onnxruntime session over a model.onnx with the IMAGE -> EMBEDDING contract."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        outputs = {o.name: o for o in self._session.get_outputs()}
        if EMBEDDING not in outputs:
            raise ValueError(f"{path} has no {EMBEDDING} output (outputs: {sorted(outputs)})")
        self.path = path
        # The graph leaves the width open (each model version has its own): ask the model.
        self.dimension = int(self.embed(np.zeros((1, 224, 224, 3), dtype=np.uint8)).shape[1])

    def embed(self, batch: Pixels) -> Floats:
        """(N, H, W, 3) uint8 -> (N, D) float32, L2-normalised by the graph."""
        [vectors] = self.run(batch)
        return vectors.astype(np.float32, copy=False)

    def run(self, batch: Pixels, *outputs: str) -> list[Floats]:
        """EMBEDDING, then each output named in `outputs` (e.g. SALIENCY), for one batch."""
        return list(self._session.run([EMBEDDING, *outputs], {INPUT: np.ascontiguousarray(batch)}))


def framing(image_size: int, resize_mode: str) -> Framing:
    """The embedder's framing at `image_size`: catalog shots as sent with its resize mode
    (EMBEDDER_RESIZE_MODE), localised query crops letterboxed. Catalog files may be large."""
    return Framing(
        limits=Limits(max_bytes=64 * 1024 * 1024), size=(image_size, image_size), mode=ResizeMode(resize_mode)
    )
