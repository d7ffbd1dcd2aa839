"""Triton Python-backend model: runs onnxruntime (CPU) on the model.onnx beside this file.

Used by the local stack, where Triton comes from the PyPI wheel `nvidia-pytriton`
and has only the Python backend. In NVIDIA's GPU container the same directory is
served by the native onnxruntime backend instead (configs/tensorrt.pbtxt), which
reads <version>/model.onnx and ignores this file.

The graph does all preprocessing (uint8 NHWC -> normalised NCHW) and the L2
normalisation, so this file only batches: the dynamic batcher hands `execute`
several requests at once, and they are concatenated into one onnxruntime call
(one big call is much faster than several small ones), then split back.

Runs inside Triton's `triton_python_backend_stub` process, whose embedded
interpreter must find numpy (< 2) and onnxruntime: it takes the site-packages of
the first `python3` on PATH (see model_repo/README.md). That interpreter cannot
import the imagesearch package, so every name comes from the config Triton hands
over (written by `imagesearch.contracts.model`): the input and the outputs; the
model file's name is Triton's own convention.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """The config's `parameters { key: ... value: { string_value: ... } }` as a plain dict."""
    return {key: value.get("string_value", "") for key, value in model_config.get("parameters", {}).items()}


def _session_options(params: dict[str, str]) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # 0 = onnxruntime's default, one thread per physical core.
    options.intra_op_num_threads = int(params.get("intra_op_thread_count", "0") or 0)
    # A chain of convolutions has no parallel branches: run nodes one after another.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # onnxruntime's idle worker threads spin briefly before sleeping. That is the faster default
    # (measured on 2 cores, alone); "0" makes them sleep at once, kinder to CPU-heavy neighbours.
    spinning = params.get("allow_spinning", "")
    if spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    return options


# The file Triton's onnxruntime backend loads from a version directory (its default_model_filename;
# for this backend Triton fills that field with "model.py", so it cannot tell us): the same file
# serves both backends (imagesearch.contracts.model.MODEL_FILE).
MODEL_FILE = "model.onnx"


def _model_path(args: dict[str, str]) -> Path:
    """<model dir>/<version>/model.onnx, found the way Triton's onnxruntime backend finds it."""
    candidate = Path(args.get("model_repository", "")) / args.get("model_version", "") / MODEL_FILE
    if candidate.is_file():
        return candidate
    return Path(__file__).resolve().with_name(MODEL_FILE)


class TritonPythonModel:
    """Entry point the Python backend looks for (the class name is fixed)."""

    def initialize(self, args: dict[str, str]) -> None:
        model_config = json.loads(args["model_config"])
        path = _model_path(args)
        if not path.is_file():
            raise pb_utils.TritonModelException(
                f"{path} is missing: build it with `python tools/export_model.py` (or scripts/bootstrap.sh)"
            )
        self.session = ort.InferenceSession(
            str(path), sess_options=_session_options(_parameters(model_config)), providers=["CPUExecutionProvider"]
        )
        [image_input] = model_config["input"]  # the contract has one input
        self.input_name = image_input["name"]
        self.output_names = [output["name"] for output in model_config["output"]]
        missing = set(self.output_names) - {o.name for o in self.session.get_outputs()}
        if missing:
            raise pb_utils.TritonModelException(f"{path} has no output(s) {sorted(missing)} that config.pbtxt declares")
        threads = self.session.get_session_options().intra_op_num_threads
        # Where the packages came from: the stub's interpreter picks its site-packages from PATH
        # (see model_repo/README.md), and a wrong one fails silently rather than loudly.
        pb_utils.Logger.log_info(
            f"image_embedding: onnxruntime {ort.__version__}, numpy {np.__version__} from {sys.prefix}; "
            f"{path} (intra_op threads {threads or 'auto'}, {os.cpu_count()} CPUs)"
        )
        if int(np.__version__.split(".")[0]) >= 2:
            pb_utils.Logger.log_warn(
                "image_embedding: numpy >= 2 in the Python-backend stub; the pytriton 0.7 stub returned "
                "empty outputs with it. Install numpy<2 in the Triton environment."
            )

    def execute(self, requests: list[Any]) -> list[Any]:
        """One onnxruntime call for all requests of a dynamic batch; one response per request."""
        try:
            images = [pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy() for request in requests]
            wanted = self._requested_outputs(requests)
            batch = images[0] if len(images) == 1 else np.concatenate(images)
            results = dict(zip(wanted, self.session.run(wanted, {self.input_name: np.ascontiguousarray(batch)})))
        except Exception as err:  # noqa: BLE001 - every request must get a response, even on failure
            error = pb_utils.TritonError(f"image_embedding inference failed: {type(err).__name__}: {err}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        return self._split(requests, [len(image) for image in images], results)

    def _requested_outputs(self, requests: list[Any]) -> list[str]:
        """Outputs any request of the batch asked for (Triton lists all of them when a client names none)."""
        asked = {name for request in requests for name in request.requested_output_names()}
        return [name for name in self.output_names if name in asked] or list(self.output_names)

    @staticmethod
    def _split(requests: list[Any], sizes: list[int], results: dict[str, np.ndarray]) -> list[Any]:
        responses = []
        start = 0
        for request, size in zip(requests, sizes):
            rows = slice(start, start + size)
            tensors = [pb_utils.Tensor(name, results[name][rows]) for name in request.requested_output_names()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def finalize(self) -> None:
        self.session = None
