#!/usr/bin/env python3
"""Does a mid-level descriptor beside the last feature map's help instance matching, before and
after `imagesearch adapt`?

Writes a model repository whose base version computes EMBEDDING = l2n([l2n(GeM(last map)),
weight x l2n(GeM(|stride-16 block|))]) (1280 + 112 dims; SALIENCY and LOGITS unchanged), so
that the product's own commands run on it: `research/exp_backbone.py` measures the base model,
`imagesearch adapt --model-repo <out>` fits the whitening on the wider vector.

    python research/exp_fused.py model_repo /tmp/fused_repo --weight 1.0

Not part of the product (research/README.md).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from imagesearch.adaptation.objectness import find_taps
from imagesearch.contracts.model import EMBEDDING, MODEL_FILE, model_dir, versions


def fuse(base: Path, out: Path, weight: float) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(base))
    graph = model.graph
    taps = find_taps(model)
    for node in graph.node:
        node.output[:] = ["fused/global" if n == EMBEDDING else n for n in node.output]
        node.input[:] = ["fused/global" if n == EMBEDDING else n for n in node.input]
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(1e-6, np.float32), "fused/eps"),
            numpy_helper.from_array(np.array(3.0, np.float32), "fused/p"),
            numpy_helper.from_array(np.array(1 / 3, np.float32), "fused/inv_p"),
            numpy_helper.from_array(np.array(weight, np.float32), "fused/weight"),
        ]
    )
    nodes = [
        helper.make_node("Abs", [taps.mid], ["fused/abs"]),
        helper.make_node("Max", ["fused/abs", "fused/eps"], ["fused/clamped"]),
        helper.make_node("Pow", ["fused/clamped", "fused/p"], ["fused/cubed"]),
        helper.make_node("ReduceMean", ["fused/cubed"], ["fused/mean"], axes=[2, 3], keepdims=0),
        helper.make_node("Pow", ["fused/mean", "fused/inv_p"], ["fused/gem"]),
        helper.make_node("ReduceL2", ["fused/gem"], ["fused/gem_norm"], axes=[1], keepdims=1),
        helper.make_node("Max", ["fused/gem_norm", "fused/eps"], ["fused/gem_safe"]),
        helper.make_node("Div", ["fused/gem", "fused/gem_safe"], ["fused/gem_unit"]),
        helper.make_node("Mul", ["fused/gem_unit", "fused/weight"], ["fused/mid"]),
        helper.make_node("Concat", ["fused/global", "fused/mid"], ["fused/both"], axis=1),
        helper.make_node("ReduceL2", ["fused/both"], ["fused/norm"], axes=[1], keepdims=1),
        helper.make_node("Div", ["fused/both", "fused/norm"], [EMBEDDING]),
    ]
    graph.node.extend(nodes)
    [output] = [o for o in graph.output if o.name == EMBEDDING]
    position = list(graph.output).index(output)
    graph.output.remove(output)
    graph.output.insert(position, helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, ["batch", 1280 + 112]))
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_repo", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--weight", type=float, default=1.0)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    shutil.copytree(args.model_repo, args.out)
    directory = model_dir(args.out)
    for version in versions(directory):
        if version != 2:
            shutil.rmtree(directory / str(version))
    base = directory / "2" / MODEL_FILE
    fuse(base, base, args.weight)
    print(f"wrote {base}")


if __name__ == "__main__":
    main()
