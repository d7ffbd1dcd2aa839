"""The base model, run in-process with onnxruntime, and the embedder's own framing.

`imagesearch adapt` embeds thousands of synthetic views once, offline: calling
onnxruntime directly avoids needing a running stack. The pixels must be exactly
what the embedder service would send to Triton, so framing goes through the
service's own Preprocessor (decode, EXIF, colour management, letterbox/crop).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imagesearch.contracts.model import EMBEDDING, INPUT


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

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, D) float32, L2-normalised by the graph."""
        [vectors] = self._session.run([EMBEDDING], {INPUT: np.ascontiguousarray(batch)})
        return vectors.astype(np.float32, copy=False)


def framers(image_size: int, resize_mode: str):  # -> tuple[Preprocessor, Preprocessor]
    """(catalog framing, query-crop framing) at `image_size`, as the embedder service does them.

    Catalog shots are framed with the service's resize mode (EMBEDDER_RESIZE_MODE); a localised
    query crop is always letterboxed (the service's second pass uses PAD).
    """
    from imagesearch_embedder.imaging import Limits, Preprocessor, ResizeMode

    limits = Limits(max_bytes=64 * 1024 * 1024, max_pixels=40_000_000)
    catalog = Preprocessor(limits=limits, size=(image_size, image_size), mode=ResizeMode(resize_mode))
    crop = Preprocessor(limits=limits, size=(image_size, image_size), mode=ResizeMode.PAD, use_draft=False)
    return catalog, crop
