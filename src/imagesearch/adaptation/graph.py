"""Append a whitening to the base ONNX graph: the adapted model is one file, served like the base.

EMBEDDING (L2-normalised, D-d) becomes an internal tensor, followed by
Sub(mean) -> MatMul(projection) -> divide by max(L2 norm, eps) -> the new
EMBEDDING (d-d). Every other output (LOGITS, SALIENCY) is untouched, so query
localisation works the same. The extra work is one D x d matrix product per
image: negligible next to the CNN.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from imagesearch.adaptation.whitening import Whitening
from imagesearch.contracts.model import EMBEDDING

# The base model's embedding, kept inside the graph under this name.
BASE_EMBEDDING = "imagesearch/base_embedding"


class GraphError(ValueError):
    """The base model is not one this tool can extend; the message says why."""


def append_whitening(base: Path, whitening: Whitening, out: Path, metadata: Mapping[str, str]) -> None:
    """Write `out`: the graph of `base` with `whitening` after its EMBEDDING output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(base))
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
    # Rename the base embedding everywhere it is produced or read.
    for node in graph.node:
        node.output[:] = [BASE_EMBEDDING if name == EMBEDDING else name for name in node.output]
        node.input[:] = [BASE_EMBEDDING if name == EMBEDDING else name for name in node.input]

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

    for key, value in metadata.items():
        entry = next((p for p in model.metadata_props if p.key == key), None)
        if entry is None:
            model.metadata_props.add(key=key, value=value)
        else:
            entry.value = value
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
