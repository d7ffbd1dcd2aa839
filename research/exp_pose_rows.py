#!/usr/bin/env python3
"""Do mirrored and rotated index rows find mirrored and rotated shopper photos?

Each catalog shot is indexed today as two rows (as sent, and trimmed to its object). Here it
also gets rows for the trimmed shot mirrored, and rotated by +-ANGLE degrees (on the shot's own
background colour, then trimmed again), embedded as the gateway embeds catalog shots; a product
still scores its best row. The query side is unchanged (the main crop's vector from
`research/exp_backbone.py`'s cache): no query cost, more index rows. A penalty subtracted from
the pose rows' scores trades the matches they add against look-alikes they admit.

    python research/exp_pose_rows.py model_repo/image_embedding/3/model.onnx \\
        --dataset ../shared/datasets/dev --dataset var/datasets/judge

Not part of the product (research/README.md).
"""

from __future__ import annotations

import io
import json

import numpy as np
from exp_backbone import CACHE, file_hash, product_scores, queries_by_kind, ranks, truths, vectors
from exp_regions import extra_rows_setup
from PIL import Image, ImageOps

from imagesearch.adaptation.embedding import BaseModel
from imagesearch.evaluation.dataset import Dataset, load_dataset
from imagesearch.imaging.framing import Framing

POSES = ("mirrored", "rotated +20", "rotated -20")


def posed(data: bytes, pose: str) -> bytes:
    """The catalog shot mirrored or rotated, on its own border colour, as PNG bytes."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    if pose == "mirrored":
        out = ImageOps.mirror(image)
    else:
        border = np.concatenate(
            [np.asarray(image)[[0, -1]].reshape(-1, 3), np.asarray(image)[:, [0, -1]].reshape(-1, 3)]
        )
        fill = tuple(int(v) for v in np.median(border, axis=0))
        out = image.rotate(float(pose.split()[1]), resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)
    buffer = io.BytesIO()
    out.save(buffer, "PNG")
    return buffer.getvalue()


def pose_rows(model: BaseModel, dataset: Dataset, framing: Framing) -> np.ndarray:
    """(items, poses, D): each item's trimmed shot in every pose, embedded."""
    cached = CACHE / f"{file_hash(model.path)}-{dataset.root.name}-poses.npy"
    if cached.exists():
        return np.load(cached)
    out = []
    for start in range(0, len(dataset.items), 16):
        batch = [
            framing.trimmed(posed(item.image.read_bytes(), pose))
            for item in dataset.items[start : start + 16]
            for pose in POSES
        ]
        out.append(model.embed(np.stack(batch)).reshape(-1, len(POSES), model.dimension))
    rows = np.concatenate(out)
    np.save(cached, rows)
    return rows


def main() -> None:
    args, framing, model = extra_rows_setup(__doc__, [0.0, 0.02, 0.05])
    subsets = {"mirrored": [0], "rotated": [1, 2], "mirrored + rotated": [0, 1, 2]}
    for folder in args.dataset:
        dataset = load_dataset(folder)
        cached = vectors(model, dataset, framing)
        truth, products = truths(dataset), len(dataset.items)
        base = product_scores(cached["main"], cached["index"], cached["owner"], products)
        rows = pose_rows(model, dataset, framing)
        variants = {"two rows (today)": base}
        for name, poses in subsets.items():
            scores = np.einsum("qd,prd->qpr", cached["main"], rows[:, poses]).max(axis=2)
            for penalty in args.penalty:
                variants[f"+ {name}, penalty {penalty}"] = np.maximum(base, scores - penalty)
        kinds = queries_by_kind(dataset)
        for name, scores in variants.items():
            rank = ranks(scores, truth)
            line: dict[str, object] = {"dataset": folder.name, "variant": name}
            line.update({f"R@{k}": round(float(np.mean(rank < k)), 3) for k in (1, 10)})
            line.update({k: round(float(np.mean(rank[v] < 1)), 3) for k, v in kinds.items()})
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
