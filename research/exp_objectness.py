#!/usr/bin/env python3
"""Can a localisation map learned from `imagesearch adapt`'s synthetic views (whose boxes are
known) find small and partly hidden products better than the model's SALIENCY heuristic?

The base model's first pass already computes, per stride-16 cell, the last feature map (1280
channels, upsampled from stride 32) and the last 112-channel block's output. A logistic
regression on those 1392 numbers per cell ("is this cell on the product?"), fitted on synthetic
views of one catalog (`imagesearch.adaptation.synthetic.make_view`), gives an objectness map: a
1 x 1 convolution in the graph. Each query is then localised on that map (several rules), its
crop embedded as the service does, and searched exactly against the index vectors that
`research/exp_backbone.py` cached.

    python research/exp_objectness.py model_repo/image_embedding/2/model.onnx \\
        --fit ../shared/datasets/dev --dataset ../shared/datasets/dev --dataset var/datasets/judge

Not part of the product (research/README.md).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from exp_backbone import CACHE, file_hash, product_scores, ranks, truths, vectors
from PIL import Image

from imagesearch.adaptation.embedding import BaseModel
from imagesearch.adaptation.synthetic import make_view
from imagesearch.contracts.model import SALIENCY
from imagesearch.evaluation.dataset import Dataset, load_dataset
from imagesearch.imaging.framing import LOCALIZE_SIZE, Framing
from imagesearch.imaging.localize import subject_box
from imagesearch.imaging.objects import cutout
from imagesearch.imaging.sniff import Limits

CELL = 16


def tapped(path: Path, out: Path) -> tuple[str, str]:
    """A copy of the model with its last feature map and mid-level block output as extra outputs."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    [abs_node] = [n for n in graph.node if n.op_type == "Abs"]
    resized = {n.input[0] for n in graph.node if n.op_type == "Resize"}
    [coarse] = [n for n in graph.node if n.op_type == "ReduceSum" and n.output[0] in resized]
    mid, features = abs_node.input[0], coarse.input[0]
    for name in (features, mid):
        graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    onnx.save(model, str(out))
    return features, mid


def cell_features(features: np.ndarray, mid: np.ndarray) -> np.ndarray:
    """(N, 1280, h, w) and (N, 112, 2h, 2w) -> (N, 2h, 2w, 1392): the coarse map upsampled bilinearly."""
    import torch
    import torch.nn.functional as F

    up = F.interpolate(torch.from_numpy(features), size=mid.shape[-2:], mode="bilinear", align_corners=False)
    return np.concatenate([up.numpy(), mid], axis=1).transpose(0, 2, 3, 1)


def cell_labels(
    width: int, height: int, box: tuple[float, float, float, float], rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell of the letterboxed photo: on the object (its box), and inside the photo at all."""
    scale = LOCALIZE_SIZE / max(width, height)
    left, top = (LOCALIZE_SIZE - width * scale) / 2, (LOCALIZE_SIZE - height * scale) / 2
    centres = (np.arange(rows) * CELL + CELL / 2).astype(np.float64)
    xs, ys = (centres[None, :] - left) / scale, (centres[:, None] - top) / scale
    inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    x0, y0, x1, y1 = box
    on = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    return on & inside, inside


class Tapped:
    """The base model with the first pass's last feature map and mid-level block as outputs too."""

    def __init__(self, path: Path) -> None:
        target = CACHE / f"tapped-{file_hash(path)}.onnx"
        CACHE.mkdir(parents=True, exist_ok=True)
        self.names = tapped(path, target)
        self.model = BaseModel(target)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _, saliency, features, mid = self.model.run(batch, SALIENCY, *self.names)
        return saliency, features, mid


def training_cells(
    model: Tapped, dataset: Dataset, framing: Framing, views: int, extent: tuple[float, float], seed: int
):
    shots = [Image.open(item.image).convert("RGB") for item in dataset.items]
    clutter = []
    for shot in shots:
        c = cutout(shot)
        c.thumbnail((96, 96))
        clutter.append(c)

    def one(position: int):
        obj = cutout(shots[position])
        obj.thumbnail((256, 256))
        out = []
        for round_ in range(views):
            rng = np.random.default_rng([seed, round_, position])
            view = make_view(obj, rng, clutter, extent)
            photo = framing.decode_photo(view.jpeg)
            out.append((framing.whole_photo(photo), view))
        return out

    xs, ys = [], []
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, len(shots), 32):
            made = [v for per in pool.map(one, range(start, min(start + 32, len(shots)))) for v in per]
            _, features, mid = model.run(np.stack([m[0] for m in made]))
            cells = cell_features(features, mid)
            for k, (_, view) in enumerate(made):
                on, inside = cell_labels(view.width, view.height, view.box, cells.shape[1])
                xs.append(cells[k][inside].astype(np.float32))
                ys.append(on[inside].astype(np.float32))
    return np.concatenate(xs), np.concatenate(ys)


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float, epochs: int = 300
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Standardised inputs, full-batch L-BFGS, balanced classes. Returns weights, bias, mean, std."""
    import torch

    mean, std = x.mean(0), x.std(0) + 1e-3
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(y)
    pos = float(y.mean())
    weight = torch.where(yt > 0, 0.5 / pos, 0.5 / (1 - pos))
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=epochs, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        logits = xt @ w + b
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, yt, reduction="none") * weight).mean()
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return w.detach().numpy(), float(b.item()), mean, std


def evaluate(base: BaseModel, model: Tapped, head, dataset: Dataset, framing: Framing) -> dict:
    w, b, mean, std = head
    cached = vectors(base, dataset, framing)
    rules = ["saliency", "learned m+1s", "learned p>0.5", "learned p>0.3", "saliency x learned"]
    crops: dict[str, list[np.ndarray]] = defaultdict(list)
    for query in dataset.queries:
        photo = framing.decode_photo(query.image.read_bytes())
        width, height = photo.image.size
        saliency, features, mid = model.run(framing.whole_photo(photo)[None])
        cells = cell_features(features, mid)[0]
        logit = ((cells - mean) / std) @ w + b
        prob = (1 / (1 + np.exp(-logit))).astype(np.float32)
        boxes = {
            "saliency": subject_box(saliency[0], width, height),
            "learned m+1s": subject_box(prob, width, height),
            "learned p>0.5": subject_box(prob, width, height, level=0.5),
            "learned p>0.3": subject_box(prob, width, height, level=0.3),
            "saliency x learned": subject_box(saliency[0] * prob, width, height),
        }
        batch = np.stack([framing.box(photo, boxes[r]) for r in rules])
        for rule, vector in zip(rules, base.embed(batch)):
            crops[rule].append(vector)
    truth, products = truths(dataset), len(dataset.items)
    out = {}
    for rule in rules:
        scores = product_scores(np.array(crops[rule]), cached["index"], cached["owner"], products)
        rank = ranks(scores, truth)
        by_kind = defaultdict(list)
        for i, q in enumerate(dataset.queries):
            by_kind[q.variation].append(rank[i] < 1)
        out[rule] = {
            "R@1": float(np.mean(rank < 1)),
            "R@10": float(np.mean(rank < 10)),
            **({k: round(float(np.mean(v)), 3) for k, v in sorted(by_kind.items()) if k}),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--fit", type=Path, required=True, help="the catalog whose synthetic views train the map")
    parser.add_argument("--dataset", type=Path, action="append", required=True)
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--extent", type=float, nargs=2, default=(0.1, 0.95))
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    framing = Framing(limits=Limits(max_bytes=64 << 20))
    base = BaseModel(args.model, threads=2)
    model = Tapped(args.model)
    x, y = training_cells(model, load_dataset(args.fit), framing, args.views, tuple(args.extent), args.seed)
    print(f"training cells {len(y)}, on the object {y.mean():.3f}", flush=True)
    head = fit_logistic(x, y, args.l2)
    w, b, mean, std = head
    pred = (((x - mean) / std) @ w + b) > 0
    print(f"train accuracy {np.mean(pred == (y > 0)):.3f}", flush=True)
    for folder in args.dataset:
        result = evaluate(base, model, head, load_dataset(folder), framing)
        print(json.dumps({"fit": args.fit.name, "dataset": folder.name, "extent": args.extent, **result}), flush=True)


if __name__ == "__main__":
    main()
