"""A localisation map learned from the synthetic views' true boxes, folded into SALIENCY.

The base model's SALIENCY (tools/export_model.py) is a heuristic: the last feature map's
channel sum times the stride-16 block's activation. It frames whatever stands out, which in a
busy photo is often not the product: a small one, one under a hand, one beside other things.
`imagesearch adapt` knows where the product is in each synthetic view it makes (the box it
pasted it in), so it fits, per stride-16 cell, "is this cell on the product?": a logistic
regression on the first pass's own features, the last feature map (upsampled as SALIENCY's
coarse part is) and the stride-16 block. Being linear, it is two 1 x 1 convolutions in the
graph (graph.py), and the adapted SALIENCY is the heuristic map times the learned probability:
alone the learned map framed worse (its boxes are the product's box, loose on rotated shapes),
multiplied in it sharpened the heuristic (docs/quality.md). No extra model evaluation per query.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from imagesearch.common.types import Floats
from imagesearch.imaging.decode import RelativeBox

# SALIENCY's stride, in input pixels.
CELL = 16
# Cells kept per view (drawn at random): ~100 k cells for a 1,500-image catalog keeps the
# fit's feature matrix near half a gigabyte.
CELLS_PER_VIEW = 64
# Products in the localisation views: from far off (a tenth of the frame's side, a product on
# a shelf or a table) to filling the photo; the whitening's views start at a quarter.
EXTENT = (0.10, 0.95)


class TapError(ValueError):
    """The base graph does not compute SALIENCY the way this module extends; the message says why."""


@dataclass(frozen=True)
class Taps:
    """Where SALIENCY's inputs are in the base graph (tools/export_model.py's names)."""

    features: str  # the last feature map, [N, C, h, w]
    mid: str  # the stride-16 block's output, [N, M, 2h, 2w]
    resize: str  # the Resize node that upsamples the feature map's channel sum to the mid grid


def find_taps(model: Any) -> Taps:  # model: onnx.ModelProto
    """SALIENCY = Resize(ReduceSum(features)) * ReduceSum(Abs(mid)) / ...: find those tensors."""
    nodes = model.graph.node
    absolute = [n for n in nodes if n.op_type == "Abs"]
    resizes = {n.input[0]: n for n in nodes if n.op_type == "Resize"}
    sums = [n for n in nodes if n.op_type == "ReduceSum" and n.output[0] in resizes]
    if len(absolute) != 1 or len(sums) != 1:
        raise TapError(
            f"expected one Abs node and one upsampled ReduceSum in the base graph, "
            f"found {len(absolute)} and {len(sums)}: not a SALIENCY graph from tools/export_model.py"
        )
    return Taps(features=sums[0].input[0], mid=absolute[0].input[0], resize=resizes[sums[0].output[0]].name)


def write_tapped(base: Path, out: Path) -> Taps:
    """A copy of `base` that also outputs the feature map and the mid-level block (for fitting)."""
    import onnx

    model = onnx.load(str(base))
    taps = find_taps(model)
    for name in (taps.features, taps.mid):
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    onnx.save(model, str(out))
    return taps


def _interpolation(n_in: int, n_out: int) -> NDArray[np.float32]:
    """(n_out, n_in) linear interpolation, half-pixel centres, clamped at the edges: ONNX Resize's
    `linear`/`half_pixel` as the export writes it (and PyTorch's align_corners=False)."""
    source = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    frac = source - low
    matrix = np.zeros((n_out, n_in), np.float64)
    np.add.at(matrix, (np.arange(n_out), low), 1 - frac)
    np.add.at(matrix, (np.arange(n_out), high), frac)
    return matrix.astype(np.float32)


def cell_features(features: Floats, mid: Floats) -> Floats:
    """(N, C, h, w) and (N, M, H, W) -> (N, H, W, C + M): the feature map upsampled to the mid grid."""
    rows, cols = mid.shape[-2:]
    up = np.einsum(
        "ih,nchw,jw->nijc",
        _interpolation(features.shape[2], rows),
        features,
        _interpolation(features.shape[3], cols),
        optimize=True,
    )
    joined: Floats = np.concatenate([up, mid.transpose(0, 2, 3, 1)], axis=3).astype(np.float32, copy=False)
    return joined


def cell_labels(
    width: int, height: int, box: tuple[float, float, float, float], rows: int, cols: int
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Per cell of a `width` x `height` photo letterboxed (centred) into the model's square input:
    (centre on the object's pixel box, centre inside the photo at all)."""
    side = max(rows, cols) * CELL
    scale = side / max(width, height)
    left, top = (side - width * scale) / 2, (side - height * scale) / 2
    xs = (np.arange(cols) * CELL + CELL / 2 - left)[None, :] / scale
    ys = (np.arange(rows) * CELL + CELL / 2 - top)[:, None] / scale
    inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    x0, y0, x1, y1 = box
    on = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    return on & inside, inside


@dataclass(frozen=True)
class Objectness:
    """logit = features_weights . upsampled feature map + mid_weights . mid block + bias, per cell."""

    features_weights: Floats  # (C,)
    mid_weights: Floats  # (M,)
    bias: float

    def probability(self, cells: Floats) -> Floats:
        """(..., C + M) cell features -> (...) probability of being on the product."""
        weights = np.concatenate([self.features_weights, self.mid_weights])
        logit = cells @ weights + np.float32(self.bias)
        probability: Floats = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
        return probability


def fit_objectness(
    cells: Floats, on: NDArray[np.bool_], channels: int, l2: float = 1e-4, iterations: int = 300
) -> Objectness:
    """Logistic regression of `on` (per cell) on `cells` ((n, C + M), the first `channels` columns the
    feature map's): standardised inputs, the two classes weighted equally, L-BFGS. The
    standardisation is folded into the weights, so the graph applies them to raw features."""
    from scipy.optimize import minimize
    from scipy.special import expit

    positive = float(on.mean()) if on.size else 0.0
    if not 0.0 < positive < 1.0:
        raise ValueError("the localisation views need cells both on and off the product")
    mean = cells.mean(axis=0)
    std = cells.std(axis=0) + np.float32(1e-3)
    z = cells - mean  # one copy of the (large) cell matrix, standardised in place
    z /= std
    target = on.astype(np.float64)
    sample = np.where(on, 0.5 / positive, 0.5 / (1 - positive)) / len(target)

    def loss(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        w, b = theta[:-1], theta[-1]
        logit = (z @ w.astype(np.float32)).astype(np.float64) + b
        value = float(np.sum(sample * (np.logaddexp(0.0, logit) - target * logit)) + l2 * w @ w)
        residual = sample * (expit(logit) - target)
        gradient = np.empty_like(theta)
        gradient[:-1] = (z.T @ residual.astype(np.float32)).astype(np.float64) + 2 * l2 * w
        gradient[-1] = residual.sum()
        return value, gradient

    result = minimize(loss, np.zeros(cells.shape[1] + 1), jac=True, method="L-BFGS-B", options={"maxiter": iterations})
    w = result.x[:-1] / std
    bias = float(result.x[-1] - np.sum(w * mean))
    w = w.astype(np.float32)
    return Objectness(features_weights=w[:channels], mid_weights=w[channels:], bias=bias)


def box_overlap(a: RelativeBox, b: RelativeBox) -> float:
    """Intersection over union of two relative boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


__all__ = [
    "CELLS_PER_VIEW",
    "EXTENT",
    "Objectness",
    "TapError",
    "Taps",
    "box_overlap",
    "cell_features",
    "cell_labels",
    "find_taps",
    "fit_objectness",
    "write_tapped",
]
