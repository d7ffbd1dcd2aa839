#!/usr/bin/env python3
"""Can local descriptors re-rank the candidates so that the visible part of a hidden product counts?

The embedding pass at 256 px already computes the last feature map (1280 x 8 x 8); its cells
are local descriptors of the crop. Each catalog row (shot as sent, and trimmed to its object,
as the gateway indexes them) keeps its cells, reduced by a PCA fitted on the catalog's own
cells; a query's main crop (the services' localisation) keeps its own. The top candidates of
the global search are re-scored by global cosine + weight x "MaxSim" (each query cell's best
match among the candidate's cells, averaged with the cells' activation as weights, as ColBERT
scores passages), so a cell on the visible half of a product finds its match while the cells
on a hand find nothing better in any candidate.

    python research/exp_local.py model_repo/image_embedding/2/model.onnx \\
        --dataset ../shared/datasets/dev --dataset var/datasets/judge

Not part of the product (research/README.md).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from exp_backbone import CACHE, file_hash, product_scores, ranks, truths
from exp_objectness import Tapped

from imagesearch.evaluation.dataset import Dataset, load_dataset
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.localize import subject_box
from imagesearch.imaging.sniff import Limits


def local_vectors(model: Tapped, dataset: Dataset, framing: Framing) -> dict[str, np.ndarray]:
    """Global vectors and 8 x 8 feature-map cells of every index row and every query's main crop."""
    cached = CACHE / f"{file_hash(model.model.path)}-{dataset.root.name}-local.npz"
    if cached.exists():
        return dict(np.load(cached))
    rows, cells, owners = [], [], []
    for start in range(0, len(dataset.items), 16):
        chunk = [item.image.read_bytes() for item in dataset.items[start : start + 16]]
        for framed in (np.stack([framing.plain(c) for c in chunk]), np.stack([framing.trimmed(c) for c in chunk])):
            embedding, _, features, _ = model.model.run(framed, "SALIENCY", *model.names)
            rows.append(embedding)
            cells.append(features.astype(np.float16))
        owners += list(range(start, start + len(chunk))) * 2
    queries, query_cells = [], []
    for query in dataset.queries:
        photo = framing.decode_photo(query.image.read_bytes())
        saliency, _, _ = model.run(framing.whole_photo(photo)[None])
        box = subject_box(saliency[0], photo.image.width, photo.image.height)
        embedding, _, features, _ = model.model.run(framing.box(photo, box)[None], "SALIENCY", *model.names)
        queries.append(embedding[0])
        query_cells.append(features[0].astype(np.float16))
    out = {
        "index": np.concatenate(rows),
        "index_cells": np.concatenate(cells),
        "owner": np.array(owners),
        "main": np.array(queries),
        "main_cells": np.array(query_cells),
    }
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cached, **out)
    return out


def whitening_of(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An adapted model's whitening (mean, projection), read from its graph."""
    import onnx
    from onnx import numpy_helper

    found = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    return found["imagesearch/whitening/mean"], found["imagesearch/whitening/projection"]


def descriptors(
    cells: np.ndarray, mean: np.ndarray, basis: np.ndarray, unit_first: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, h, w) -> (N, h*w, d) unit descriptors and (N, h*w) activation weights."""
    flat = cells.astype(np.float32).reshape(cells.shape[0], cells.shape[1], -1).transpose(0, 2, 1)
    weight = np.linalg.norm(flat, axis=2)
    if unit_first:
        flat = flat / (weight[..., None] + 1e-6)
    reduced = (flat - mean) @ basis
    reduced /= np.linalg.norm(reduced, axis=2, keepdims=True) + 1e-6
    return reduced, weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--dataset", type=Path, action="append", required=True)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0, 2.0, 100.0])
    parser.add_argument(
        "--cell-whitening", action="store_true", help="descriptors: the adapted model's whitening applied per cell"
    )
    parser.add_argument(
        "--pca-from", type=Path, help="fit the PCA on this dataset's catalog cells instead (a fixed, shipped basis)"
    )
    args = parser.parse_args()
    framing = Framing(limits=Limits(max_bytes=64 << 20))
    model = Tapped(args.model)
    for folder in args.dataset:
        dataset = load_dataset(folder)
        v = local_vectors(model, dataset, framing)
        truth, products = truths(dataset), len(dataset.items)
        # PCA of the catalog's own cells (unsupervised: the catalog is known at index time).
        if args.cell_whitening:
            # The adapted model's learned whitening, applied to each unit-length cell as to the pooled vector.
            mean, basis = whitening_of(args.model)
            index_desc, _ = descriptors(v["index_cells"], mean, basis, unit_first=True)
            query_desc, query_weight = descriptors(v["main_cells"], mean, basis, unit_first=True)
        else:
            source = local_vectors(model, load_dataset(args.pca_from), framing) if args.pca_from else v
            sample = source["index_cells"][::4].astype(np.float32)
            flat = sample.reshape(sample.shape[0], sample.shape[1], -1).transpose(0, 2, 1)
            flat = flat.reshape(-1, sample.shape[1])
            mean = flat.mean(0)
            _, _, vt = np.linalg.svd(flat[::3] - mean, full_matrices=False)
            basis = vt[: args.dims].T
            index_desc, _ = descriptors(v["index_cells"], mean, basis)
            query_desc, query_weight = descriptors(v["main_cells"], mean, basis)
        scores = product_scores(v["main"], v["index"], v["owner"], products)
        rows_of = defaultdict(list)
        for row, owner in enumerate(v["owner"]):
            rows_of[int(owner)].append(row)
        top = np.argsort(-scores, axis=1)[:, : args.top]
        maxsim = np.zeros(top.shape, np.float32)
        for q in range(len(top)):
            w = query_weight[q] / query_weight[q].sum()
            for k, product in enumerate(top[q]):
                best = 0.0
                for row in rows_of[int(product)]:
                    sim = (query_desc[q] @ index_desc[row].T).max(axis=1) @ w
                    best = max(best, float(sim))
                maxsim[q, k] = best
        kinds = defaultdict(list)
        for number, query in enumerate(dataset.queries):
            kinds[query.variation].append(number)
        for weight in args.weights:
            rescored = scores.copy()
            combined = np.take_along_axis(scores, top, axis=1) + weight * maxsim
            # Candidates beyond the top keep their order below the re-scored ones.
            rescored[np.arange(len(top))[:, None], top] = combined + 10.0
            rank = ranks(rescored, truth)
            line = {"dataset": folder.name, "weight": weight, "top": args.top, "dims": args.dims}
            line["pca"] = "cell whitening" if args.cell_whitening else (args.pca_from.name if args.pca_from else "own")
            line.update({"R@1": round(float(np.mean(rank < 1)), 3), "R@10": round(float(np.mean(rank < 10)), 3)})
            line.update({k: round(float(np.mean(rank[n] < 1)), 3) for k, n in sorted(kinds.items()) if k})
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
