#!/usr/bin/env python3
"""A second localisation iteration: the main crop's own SALIENCY map tightens its box.

The first pass's box is often loose where the photo is blurred or busy (the blur's halo, a bright
patch of wallpaper joined to the product), and the loose crop ranks the product a few places down.
The crop's embedding pass (256 px) computes its own SALIENCY map anyway: the subject found inside the
crop (its map thresholded at mean + `--stds` std, the largest component) is a tighter box, embedded
once more at 256 px (1.31 evaluations) on every query or only on the unconvincing ones. Each product
then scores its best of the first crop and the refined one, the refined one counting `--discount`
logits less, alone and with the localised zoom tiles after it (research/exp_locate_size.py's caches).

    python research/exp_refine.py model_repo/image_embedding/3/model.onnx \\
        --dataset ../shared/datasets/dev --dataset var/datasets/judge

Not part of the product (research/README.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from exp_backbone import CACHE, file_hash, product_scores, queries_by_kind, ranks, recalls, report, truths, vectors
from exp_locate_size import DISCOUNT_LOGITS, best_tile_scores, main_crops, tile_cost, tiles

from imagesearch.adaptation.embedding import BaseModel
from imagesearch.contracts.model import SALIENCY
from imagesearch.evaluation.dataset import Dataset, load_dataset
from imagesearch.imaging.decode import RelativeBox
from imagesearch.imaging.detect import find_objects
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.localize import photo_grid, subject_box
from imagesearch.imaging.sniff import Limits

CROP_COST = 256**2 / 224**2


def tightened(saliency: np.ndarray, width: int, height: int, box: RelativeBox, stds: float) -> RelativeBox:
    """The subject inside `box` of a `width` x `height` photo, from the box's own (letterboxed) map."""
    x0, y0, x1, y1 = box
    part_w, part_h = max(1, round((x1 - x0) * width)), max(1, round((y1 - y0) * height))
    fine, (left, top, photo_w, photo_h) = photo_grid(saliency, part_w, part_h)
    inside = fine[int(np.ceil(top)) : int(top + photo_h), int(np.ceil(left)) : int(left + photo_w)]
    level = float(inside.mean() + stds * inside.std()) if inside.size else None
    bx0, by0, bx1, by1 = subject_box(saliency, part_w, part_h, level)
    return (x0 + bx0 * (x1 - x0), y0 + by0 * (y1 - y0), x0 + bx1 * (x1 - x0), y0 + by1 * (y1 - y0))


def refined_crops(model: BaseModel, dataset: Dataset, framing: Framing, stds: float) -> tuple[np.ndarray, np.ndarray]:
    """Each query's refined crop vector, and how much of the first box's area the refined box keeps."""
    cached = CACHE / f"{file_hash(model.path)}-{dataset.root.name}-refined{stds}.npz"
    if cached.exists():
        data = np.load(cached)
        return data["vectors"], data["kept"]
    out, kept = [], []
    for query in dataset.queries:
        photo = framing.decode_photo(query.image.read_bytes())
        _, saliency = model.run(framing.whole_photo(photo)[None], SALIENCY)
        box = find_objects(photo.image, saliency[0])[0].box
        _, crop_saliency = model.run(framing.box(photo, box)[None], SALIENCY)
        refined = tightened(crop_saliency[0], photo.image.width, photo.image.height, box, stds)
        out.append(model.embed(framing.box(photo, refined)[None])[0])
        area = (box[2] - box[0]) * (box[3] - box[1])
        kept.append((refined[2] - refined[0]) * (refined[3] - refined[1]) / max(area, 1e-9))
    vectors_, kept_ = np.stack(out), np.array(kept)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cached, vectors=vectors_, kept=kept_)
    return vectors_, kept_


def measure(model: BaseModel, folder: Path, framing: Framing, args: argparse.Namespace) -> None:
    slope, intercept = args.calibration
    dataset = load_dataset(folder)
    v = vectors(model, dataset, framing)
    products, truth, kinds = len(dataset.items), truths(dataset), queries_by_kind(dataset)
    tile_best = best_tile_scores(tiles(model, dataset, framing), v["index"], v["owner"], products)
    main = product_scores(main_crops(model, dataset, framing), v["index"], v["owner"], products)
    unconvincing = 1 / (1 + np.exp(-(slope * main.max(1) + intercept))) < 0.5
    share = float(unconvincing.mean())

    def line(variant: str, scores: np.ndarray, cost: float, **extra: object) -> None:
        rank = ranks(scores, truth)
        report(
            {
                "dataset": folder.name,
                "variant": variant,
                **recalls(rank, kinds),
                "evaluations": round(cost, 2),
                **extra,
            },
            args.out,
        )

    def with_tiles(scores: np.ndarray) -> np.ndarray:
        return np.where(unconvincing[:, None], np.maximum(scores, tile_best - DISCOUNT_LOGITS / slope), scores)

    base_cost, tiles_cost = 1 + CROP_COST, share * tile_cost(224, 256)
    line("main crop", main, base_cost)
    line("main crop + tiles", with_tiles(main), base_cost + tiles_cost)
    for stds in args.stds:
        refined_vectors, kept = refined_crops(model, dataset, framing, stds)
        refined = product_scores(refined_vectors, v["index"], v["owner"], products)
        area = {"refined box area / first": round(float(np.median(kept)), 2)}
        line(f"refined only ({stds} std)", refined, base_cost + CROP_COST, **area)
        for logits in args.discount:
            best = np.maximum(main, refined - logits / slope)
            for when, chosen, cost in (
                ("every query", best, base_cost + CROP_COST),
                ("unconvincing", np.where(unconvincing[:, None], best, main), base_cost + share * CROP_COST),
            ):
                label = f"crop + refined ({stds} std, {logits} logits, {when})"
                line(label, chosen, cost, **area)
                line(f"{label} + tiles", with_tiles(chosen), cost + tiles_cost, **area)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--dataset", type=Path, action="append", required=True)
    parser.add_argument("--stds", type=float, nargs="+", default=[0.0, 0.5, 1.0], help="the refining threshold")
    parser.add_argument("--discount", type=float, nargs="+", default=[0.0, 0.6, 1.2], help="in logits")
    parser.add_argument("--calibration", type=float, nargs=2, default=(20.71, -7.18), help="slope, intercept")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model = BaseModel(args.model)
    framing = Framing(limits=Limits(max_bytes=64 << 20))
    for folder in args.dataset:
        measure(model, folder, framing, args)


if __name__ == "__main__":
    main()
