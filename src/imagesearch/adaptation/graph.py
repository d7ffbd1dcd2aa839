"""The adapted graph: the base ONNX graph with a whitening, and optionally a learned
localisation map, appended. The adapted model is one file, served like the base.

EMBEDDING (L2-normalised, D-d) becomes an internal tensor, followed by
Sub(mean) -> MatMul(projection) -> divide by max(L2 norm, eps) -> the new
EMBEDDING (d-d). With an objectness map (objectness.py), SALIENCY becomes the base
map times Sigmoid(Resize(Conv1x1(features)) + Conv1x1(mid)), the feature map's
term upsampled by a copy of the base graph's own Resize; otherwise SALIENCY is
untouched. LOGITS always is. The extra work is one D x d matrix product and two
1 x 1 convolutions to one channel per image: negligible next to the CNN.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from imagesearch.adaptation.objectness import Objectness, find_taps
from imagesearch.adaptation.whitening import Whitening
from imagesearch.contracts.model import EMBEDDING, SALIENCY

# The base model's embedding and saliency map, kept inside the graph under these names.
BASE_EMBEDDING = "imagesearch/base_embedding"
BASE_SALIENCY = "imagesearch/base_saliency"


class GraphError(ValueError):
    """The base model is not one this tool can extend; the message says why."""


def write_adapted_graph(
    base: Path, out: Path, metadata: Mapping[str, str], whitening: Whitening, objectness: Objectness | None = None
) -> None:
    """Write `out`: the graph of `base` with `whitening` after its EMBEDDING output and, if given,
    `objectness` multiplied into its SALIENCY output."""
    import onnx

    model = onnx.load(str(base))
    _append_whitening(model, base, whitening)
    if objectness is not None:
        _append_objectness(model, objectness)
    for key, value in metadata.items():
        entry = next((p for p in model.metadata_props if p.key == key), None)
        if entry is None:
            model.metadata_props.add(key=key, value=value)
        else:
            entry.value = value
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))


def _rename(graph: Any, old: str, new: str) -> None:
    """Rename tensor `old` wherever it is produced or read."""
    for node in graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
        node.input[:] = [new if name == old else name for name in node.input]


def _append_whitening(model: Any, base: Path, whitening: Whitening) -> None:
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    outputs = {o.name: o for o in graph.output}
    if EMBEDDING not in outputs:
        raise GraphError(f"{base} has no {EMBEDDING} output (outputs: {sorted(outputs)})")
    producers = [node for node in graph.node if EMBEDDING in node.output]
    if len(producers) != 1:
        raise GraphError(f"{base}: expected one node producing {EMBEDDING}, found {len(producers)}")
    shape = outputs[EMBEDDING].type.tensor_type.shape.dim
    width = shape[-1].dim_value if len(shape) == 2 else 0
    if width != whitening.input_dimension:
        raise GraphError(
            f"{base} outputs {width}-d embeddings but the whitening expects {whitening.input_dimension}-d input"
        )
    _rename(graph, EMBEDDING, BASE_EMBEDDING)

    prefix = "imagesearch/whitening/"
    graph.initializer.extend(
        [
            numpy_helper.from_array(whitening.mean.astype(np.float32), prefix + "mean"),
            numpy_helper.from_array(whitening.projection.astype(np.float32), prefix + "projection"),
            numpy_helper.from_array(np.array(1e-12, dtype=np.float32), prefix + "epsilon"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Sub", [BASE_EMBEDDING, prefix + "mean"], [prefix + "centred"], name=prefix + "centre"),
            helper.make_node(
                "MatMul", [prefix + "centred", prefix + "projection"], [prefix + "projected"], name=prefix + "project"
            ),
            # ReduceL2 takes `axes` as an attribute up to opset 17 (the base model's opset).
            helper.make_node(
                "ReduceL2", [prefix + "projected"], [prefix + "norm"], axes=[1], keepdims=1, name=prefix + "norm"
            ),
            helper.make_node(
                "Max", [prefix + "norm", prefix + "epsilon"], [prefix + "safe_norm"], name=prefix + "clamp"
            ),
            helper.make_node(
                "Div", [prefix + "projected", prefix + "safe_norm"], [EMBEDDING], name=prefix + "normalise"
            ),
        ]
    )
    position = list(outputs).index(EMBEDDING)
    batch = shape[0]
    new_output = helper.make_tensor_value_info(
        EMBEDDING, TensorProto.FLOAT, [batch.dim_param or None, whitening.dimension]
    )
    graph.output.remove(outputs[EMBEDDING])
    graph.output.insert(position, new_output)


def _append_objectness(model: Any, objectness: Objectness) -> None:
    from onnx import helper, numpy_helper

    graph = model.graph
    if not any(o.name == SALIENCY for o in graph.output):
        raise GraphError(f"the base graph has no {SALIENCY} output to sharpen")
    taps = find_taps(model)
    [resize] = [n for n in graph.node if n.name == taps.resize]
    _rename(graph, SALIENCY, BASE_SALIENCY)
    prefix = "imagesearch/objectness/"
    features_weights = objectness.features_weights.astype(np.float32).reshape(1, -1, 1, 1)
    mid_weights = objectness.mid_weights.astype(np.float32).reshape(1, -1, 1, 1)
    graph.initializer.extend(
        [
            numpy_helper.from_array(features_weights, prefix + "features_weights"),
            numpy_helper.from_array(mid_weights, prefix + "mid_weights"),
            numpy_helper.from_array(np.array([objectness.bias], dtype=np.float32), prefix + "bias"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), prefix + "channel_axis"),
        ]
    )
    upsample = helper.make_node(
        "Resize", [prefix + "features_logit", *resize.input[1:]], [prefix + "features_logit_up"], name=prefix + "up"
    )
    upsample.attribute.extend(resize.attribute)  # the base graph's own interpolation, so the two terms align
    graph.node.extend(
        [
            helper.make_node(
                "Conv",
                [taps.features, prefix + "features_weights"],
                [prefix + "features_logit"],
                name=prefix + "features",
            ),
            upsample,
            helper.make_node(
                "Conv", [taps.mid, prefix + "mid_weights", prefix + "bias"], [prefix + "mid_logit"], name=prefix + "mid"
            ),
            helper.make_node(
                "Add", [prefix + "features_logit_up", prefix + "mid_logit"], [prefix + "logit"], name=prefix + "add"
            ),
            helper.make_node("Sigmoid", [prefix + "logit"], [prefix + "probability_map"], name=prefix + "sigmoid"),
            helper.make_node(
                "Squeeze",
                [prefix + "probability_map", prefix + "channel_axis"],
                [prefix + "probability"],
                name=prefix + "squeeze",
            ),
            helper.make_node("Mul", [BASE_SALIENCY, prefix + "probability"], [SALIENCY], name=prefix + "sharpen"),
        ]
    )
