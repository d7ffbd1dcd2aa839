#!/usr/bin/env python3
"""Do regional index rows let a partly hidden product be found by its visible part?

Each catalog shot is indexed today as two rows (as sent, and trimmed to its object). Here it
also gets rows for parts of its object box (halves, or two-thirds windows), embedded as query
crops are (letterboxed); a product still scores its best row. The query side is unchanged
(the main crop's vector from `research/exp_backbone.py`'s cache), so the query cost is the
same; the index grows. A penalty subtracted from region rows' scores trades the visible-part
matches against look-alikes matched by a part.

    python research/exp_regions.py model_repo/image_embedding/2/model.onnx \\
        --dataset ../shared/datasets/dev --dataset var/datasets/judge

Not part of the product (research/README.md).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from exp_backbone import CACHE, file_hash, product_scores, ranks, truths, vectors
from PIL import Image

from imagesearch.adaptation.embedding import BaseModel
from imagesearch.evaluation.dataset import Dataset, load_dataset
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.objects import object_box
from imagesearch.imaging.sniff import Limits

LAYOUTS = {
    "halves": [(0, 0, 0.5, 1), (0.5, 0, 1, 1), (0, 0, 1, 0.5), (0, 0.5, 1, 1)],
    "two-thirds": [(0, 0, 2 / 3, 1), (1 / 3, 0, 1, 1), (0, 0, 1, 2 / 3), (0, 1 / 3, 1, 1)],
}


def region_rows(model: BaseModel, dataset: Dataset, framing: Framing, layout: str) -> np.ndarray:
    """(items, regions, D): each item's object box cut into the layout's parts, embedded."""
    cached = CACHE / f"{file_hash(model.path)}-{dataset.root.name}-regions-{layout}.npy"
    if cached.exists():
        return np.load(cached)
    parts = LAYOUTS[layout]
    out = []
    for start in range(0, len(dataset.items), 16):
        batch = []
        for item in dataset.items[start : start + 16]:
            photo = framing.decode_photo(item.image.read_bytes())
            im: Image.Image = photo.image
            w, h = im.width, im.height
            x0, y0, x1, y1 = object_box(im) or (0, 0, w, h)
            for a, b, c, d in parts:
                box = (
                    (x0 + a * (x1 - x0)) / w,
                    (y0 + b * (y1 - y0)) / h,
                    (x0 + c * (x1 - x0)) / w,
                    (y0 + d * (y1 - y0)) / h,
                )
                batch.append(framing.box(photo, box))
        out.append(model.embed(np.stack(batch)).reshape(-1, len(parts), model.dimension))
    rows = np.concatenate(out)
    np.save(cached, rows)
    return rows


def extra_rows_setup(doc: str | None, penalties: list[float]) -> tuple[argparse.Namespace, Framing, BaseModel]:
    """The command line of an extra-index-rows experiment (this one, exp_pose_rows.py): a model file,
    datasets and penalties; the framing and the model to embed with."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--dataset", type=Path, action="append", required=True)
    parser.add_argument("--penalty", type=float, nargs="+", default=penalties)
    args = parser.parse_args()
    return args, Framing(limits=Limits(max_bytes=64 << 20)), BaseModel(args.model, threads=2)


def main() -> None:
    args, framing, model = extra_rows_setup(__doc__, [0.0, 0.02, 0.05, 0.1])
    for folder in args.dataset:
        dataset = load_dataset(folder)
        cached = vectors(model, dataset, framing)
        truth, products = truths(dataset), len(dataset.items)
        base = product_scores(cached["main"], cached["index"], cached["owner"], products)
        variants = {"two rows (today)": base}
        for layout in LAYOUTS:
            rows = region_rows(model, dataset, framing, layout)
            regional = np.einsum("qd,prd->qpr", cached["main"], rows).max(axis=2)
            for penalty in args.penalty:
                variants[f"+ {layout}, penalty {penalty}"] = np.maximum(base, regional - penalty)
        kinds = defaultdict(list)
        for number, query in enumerate(dataset.queries):
            kinds[query.variation].append(number)
        for name, scores in variants.items():
            rank = ranks(scores, truth)
            line = {"dataset": folder.name, "variant": name, "R@1": float(np.mean(rank < 1))}
            line["R@10"] = float(np.mean(rank < 10))
            line.update({k: round(float(np.mean(rank[v] < 1)), 3) for k, v in sorted(kinds.items()) if k})
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
