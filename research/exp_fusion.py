#!/usr/bin/env python3
"""Can the whole photo's vector (free: the localisation pass computes it) rescue queries whose crop
misses the product? Reproduces the service's query and index pipeline offline with onnxruntime on a
model version's file, through the product's own framing (`imagesearch.imaging.framing.Framing`,
exactly what the embedder sends Triton), then compares rank fusions of the crop's and the whole
photo's result lists.

    python research/exp_fusion.py model_repo/image_embedding/3/model.onnx [dataset folder]

Not part of the product (research/README.md).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from exp_backbone import product_scores

from imagesearch.adaptation.embedding import BaseModel
from imagesearch.contracts.model import SALIENCY
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.sniff import Limits

DEV = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dev"


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def report(name: str, scores: np.ndarray, truth: np.ndarray) -> None:
    order = np.argsort(-scores, 1)
    rank = np.array([list(order[i]).index(truth[i]) for i in range(len(truth))])
    print(f"{name:45s} R@1 {np.mean(rank < 1):.3f} R@5 {np.mean(rank < 5):.3f} R@10 {np.mean(rank < 10):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a version's model.onnx")
    parser.add_argument("dataset", type=Path, nargs="?", default=DEV, help=f"dataset folder (default {DEV})")
    args = parser.parse_args()
    model = BaseModel(args.model)
    framing = Framing(limits=Limits(max_bytes=64 << 20))
    rows = read_rows(args.dataset / "catalog.csv") + read_rows(args.dataset / "distractors.csv")
    index_parts, owners = [], []
    for start in range(0, len(rows), 32):
        chunk = [(args.dataset / r["image"]).read_bytes() for r in rows[start : start + 32]]
        index_parts.append(model.embed(np.stack([framing.plain(c) for c in chunk])))
        index_parts.append(model.embed(np.stack([framing.trimmed(c) for c in chunk])))
        owners += list(range(start, start + len(chunk))) * 2
    index, owner = np.concatenate(index_parts), np.array(owners)
    ids = [r["product_id"] for r in rows]
    queries = read_rows(args.dataset / "queries.csv")
    truth = np.array([ids.index(q["product_id"]) for q in queries])
    crop_vectors, whole_vectors = [], []
    for query in queries:
        photo = framing.decode_photo((args.dataset / query["image"]).read_bytes())
        whole, saliency = model.run(framing.whole_photo(photo)[None], SALIENCY)
        crop_vectors.append(model.embed(framing.localized(photo, saliency[0])[None])[0])
        whole_vectors.append(whole[0])
    crop_s = product_scores(np.array(crop_vectors), index, owner, len(rows))
    whole_s = product_scores(np.array(whole_vectors), index, owner, len(rows))

    report("crop (service)", crop_s, truth)
    report("whole photo", whole_s, truth)
    for weight in (0.1, 0.2, 0.3, 0.5):
        report(f"score fusion crop + {weight} x whole", crop_s + weight * whole_s, truth)
    rank_crop = np.argsort(np.argsort(-crop_s, 1), 1)
    rank_whole = np.argsort(np.argsort(-whole_s, 1), 1)
    for weight in (0.25, 0.5, 1.0):
        report(f"RRF k=60 whole weight {weight}", 1 / (60 + rank_crop) + weight / (60 + rank_whole), truth)
    # keep the crop's top k, then fill up to 10 with the whole photo's best not already listed
    order_c, order_w = np.argsort(-crop_s, 1), np.argsort(-whole_s, 1)
    for keep in (5, 7, 8, 9):
        hits = 0
        for i in range(len(truth)):
            top = list(order_c[i][:keep])
            for j in order_w[i]:
                if len(top) == 10:
                    break
                if j not in top:
                    top.append(j)
            hits += truth[i] in top
        print(f"crop top {keep} + whole-photo fill to 10:       R@10 {hits / len(truth):.3f}")


if __name__ == "__main__":
    main()
