#!/usr/bin/env python3
"""Can a localisation map learned from `imagesearch adapt`'s synthetic views (whose boxes are
known) find small and partly hidden products better than the model's SALIENCY heuristic?

The base model's first pass already computes, per stride-16 cell, the last feature map (1280
channels, upsampled from stride 32) and the last 112-channel block's output. A logistic
regression on those 1392 numbers per cell ("is this cell on the product?"), fitted on synthetic
views of one catalog (`imagesearch.adaptation.synthetic.make_view`), gives an objectness map: a
1 x 1 convolution in the graph (the product's `imagesearch.adaptation.objectness`, which
`imagesearch adapt --learned-localisation` uses; the figures in docs/quality.md were taken when
this script had its own copy, fitted with torch's L-BFGS, at 5293514). Each query is then
localised on that map (several rules), its crop embedded as the service does, and searched exactly against the index vectors that
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
from imagesearch.adaptation.objectness import Objectness, cell_features, cell_labels, fit_objectness, write_tapped
from imagesearch.adaptation.synthetic import make_view
from imagesearch.contracts.model import SALIENCY
from imagesearch.evaluation.dataset import Dataset, load_dataset
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.localize import subject_box
from imagesearch.imaging.objects import cutout
from imagesearch.imaging.sniff import Limits


class Tapped:
    """The base model with the first pass's last feature map and mid-level block as outputs too."""

    def __init__(self, path: Path) -> None:
        target = CACHE / f"tapped-{file_hash(path)}.onnx"
        CACHE.mkdir(parents=True, exist_ok=True)
        taps = write_tapped(path, target)
        self.names = (taps.features, taps.mid)
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
                on, inside = cell_labels(view.width, view.height, view.box, *cells.shape[1:3])
                xs.append(cells[k][inside].astype(np.float32))
                ys.append(on[inside])
    return np.concatenate(xs), np.concatenate(ys), features.shape[1]


def evaluate(base: BaseModel, model: Tapped, head: Objectness, dataset: Dataset, framing: Framing) -> dict:
    cached = vectors(base, dataset, framing)
    rules = ["saliency", "learned m+1s", "learned p>0.5", "learned p>0.3", "saliency x learned"]
    crops: dict[str, list[np.ndarray]] = defaultdict(list)
    for query in dataset.queries:
        photo = framing.decode_photo(query.image.read_bytes())
        width, height = photo.image.size
        saliency, features, mid = model.run(framing.whole_photo(photo)[None])
        prob = head.probability(cell_features(features, mid)[0])
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
    x, on, channels = training_cells(model, load_dataset(args.fit), framing, args.views, tuple(args.extent), args.seed)
    print(f"training cells {len(on)}, on the object {on.mean():.3f}", flush=True)
    head = fit_objectness(x, on, channels=channels, l2=args.l2)
    print(f"train accuracy {np.mean((head.probability(x) > 0.5) == on):.3f}", flush=True)
    for folder in args.dataset:
        result = evaluate(base, model, head, load_dataset(folder), framing)
        print(json.dumps({"fit": args.fit.name, "dataset": folder.name, "extent": args.extent, **result}), flush=True)


if __name__ == "__main__":
    main()
