#!/usr/bin/env python3
"""How much of the judge set's loss is framing: the services' boxes against the product's true box.

The judge set (tools/build_judge_set.py) records each query's true product box (`box` in
queries_meta.csv). For each query this measures, with the model file given (a version's model.onnx):

* how well the first pass's main box and the other objects found (imagesearch.imaging.detect, as
  the embedder finds them) overlap the true box (IoU), per kind of variation;
* Recall@1 when the crop searched is the main box (what `Search` does), the true box (a perfect
  localiser: the ceiling of any better framing), and the found object that overlaps the truth
  best (a perfect choice among today's proposals).

    python research/exp_oracle.py model_repo/image_embedding/3/model.onnx --dataset var/datasets/judge

Not part of the product (research/README.md).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from exp_backbone import product_scores, queries_by_kind, ranks, report, truths, vectors

from imagesearch.adaptation.embedding import BaseModel
from imagesearch.adaptation.objectness import box_overlap as iou
from imagesearch.contracts.model import SALIENCY
from imagesearch.evaluation.dataset import load_dataset
from imagesearch.imaging.detect import find_objects
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.sniff import Limits

Box = tuple[float, float, float, float]


def true_boxes(folder: Path) -> dict[str, Box]:
    with (folder / "queries_meta.csv").open(newline="") as handle:
        out: dict[str, Box] = {}
        reader = csv.DictReader(handle)
        if "box" not in (reader.fieldnames or []):
            return out  # a dataset that does not record them (dev)
        for row in reader:
            left, top, right, bottom = (float(v) for v in row["box"].split())
            w, h = float(row["width"]), float(row["height"])
            out[row["query_id"]] = (left / w, top / h, right / w, bottom / h)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model = BaseModel(args.model)
    framing = Framing(limits=Limits(max_bytes=64 << 20))
    dataset = load_dataset(args.dataset)
    truth_box = true_boxes(args.dataset)
    v = vectors(model, dataset, framing)
    main_iou, best_iou, oracle, best_found = [], [], [], []
    for query in dataset.queries:
        photo = framing.decode_photo(query.image.read_bytes())
        _, saliency = model.run(framing.whole_photo(photo)[None], SALIENCY)
        found = find_objects(photo.image, saliency[0])
        truth = truth_box[query.query_id]
        overlaps = [iou(o.box, truth) for o in found]
        main_iou.append(overlaps[0])
        best_iou.append(max(overlaps))
        crops = model.embed(
            np.stack([framing.box(photo, truth), framing.box(photo, found[int(np.argmax(overlaps))].box)])
        )
        oracle.append(crops[0])
        best_found.append(crops[1])
    truth = truths(dataset)
    rank = {
        name: ranks(product_scores(np.array(q), v["index"], v["owner"], len(dataset.items)), truth)
        for name, q in (("main box", v["main"]), ("true box", oracle), ("best found object", best_found))
    }
    kinds = {"all": list(range(len(dataset.queries))), **queries_by_kind(dataset)}
    main_iou_a, best_iou_a = np.array(main_iou), np.array(best_iou)
    for kind, numbers in kinds.items():
        report(
            {
                "model": str(args.model),
                "kind": kind,
                "queries": len(numbers),
                "main IoU": round(float(np.median(main_iou_a[numbers])), 3),
                "main IoU >= 0.5": round(float(np.mean(main_iou_a[numbers] >= 0.5)), 3),
                "any object IoU >= 0.5": round(float(np.mean(best_iou_a[numbers] >= 0.5)), 3),
                **{f"R@1 {name}": round(float(np.mean(r[numbers] < 1)), 3) for name, r in rank.items()},
            },
            args.out,
        )


if __name__ == "__main__":
    main()
