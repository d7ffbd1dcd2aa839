#!/usr/bin/env python3
"""A classic, model-free saliency beside the model's: does spectral-residual pop-out find what SALIENCY misses?

SALIENCY is where the network's activations concentrate; on a textured photo the texture is as active
as a small product. The spectral residual (Hou & Zhang, CVPR 2007: the log amplitude spectrum minus its
local average, transformed back: `imagesearch.imaging.popout`) marks what is unlike the rest of the
image, whatever it is. Here, on the photo at 64 x 64 px (no extra model evaluation):

* `sr`: the main box from the spectral-residual map of the photo alone (the product's threshold rule);
* `product`: SALIENCY (upsampled) x the spectral-residual map;
* `extra`: the spectral-residual box as a second crop on the unconvincing queries (1.31 evaluations),
  each product at its best of the first crop and this one (`--discount` logits less);
* `as a localised tile`: that box looked at as a zoom tile is (its own first pass and the crop found in
  it: 2.31 evaluations), what the gateway does now (`GATEWAY_ZOOM_POPOUT`);

each alone and with the localised zoom tiles after it (research/exp_locate_size.py's caches).

    python research/exp_spectral.py model_repo/image_embedding/3/model.onnx \\
        --dataset ../shared/datasets/dev --dataset var/datasets/judge \\
        --adapted model_repo/image_embedding/2/model.onnx     # also adapted to each catalog

Not part of the product (research/README.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from exp_backbone import CACHE, file_hash, product_scores, queries_by_kind, ranks, recalls, report, truths, vectors
from exp_generic import embedded_generic
from exp_locate_size import DISCOUNT_LOGITS, best_tile_scores, main_crops, tile_cost, tiles
from PIL import Image
from scipy import ndimage

from imagesearch.adaptation.build import AdaptOptions, fit_adaptation
from imagesearch.adaptation.embedding import BaseModel
from imagesearch.contracts.model import SALIENCY
from imagesearch.evaluation.dataset import Dataset, load_dataset
from imagesearch.imaging.decode import WHOLE
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.localize import photo_grid, subject_box
from imagesearch.imaging.popout import SIDE, spectral_residual
from imagesearch.imaging.sniff import Limits

CROP_COST = 256**2 / 224**2


def second_region(residual: np.ndarray) -> tuple[float, float, float, float] | None:
    """The box of the map's second largest region above the product's threshold (None: it has one)."""
    fine, (left, top, photo_w, photo_h) = photo_grid(residual, SIDE, SIDE)
    labels, count = ndimage.label(fine > fine.mean() + fine.std())
    if count < 2:
        return None
    second = int(np.argsort(-np.bincount(labels.ravel())[1:])[1]) + 1
    ys, xs = np.nonzero(labels == second)
    return (
        (xs.min() - left) / photo_w,
        (ys.min() - top) / photo_h,
        (xs.max() + 1 - left) / photo_w,
        (ys.max() + 1 - top) / photo_h,
    )


def second_looks(model: BaseModel, dataset: Dataset, framing: Framing) -> dict[str, np.ndarray]:
    """Per query: the map's second region looked at as a localised tile (its first pass and the crop
    found in it), and whether there is one."""
    cached = CACHE / f"{file_hash(model.path)}-{dataset.root.name}-spectral-second.npz"
    if cached.exists():
        return dict(np.load(cached))
    first, inner, has = [], [], []
    for query in dataset.queries:
        photo = framing.decode_photo(query.image.read_bytes())
        box = second_region(spectral_residual(photo.image))
        has.append(box is not None)
        box = box or WHOLE
        region_vector, region_saliency = model.run(framing.whole_photo(photo, box)[None], SALIENCY)
        first.append(region_vector[0])
        inner.append(model.embed(framing.localized(photo, region_saliency[0], box)[None])[0])
    out = {"first": np.stack(first), "inner": np.stack(inner), "has": np.array(has)}
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cached, **out)
    return out


def boxes(model: BaseModel, dataset: Dataset, framing: Framing) -> dict[str, np.ndarray]:
    """Per query: the crop vectors of the spectral-residual box and of the SALIENCY x residual box."""
    cached = CACHE / f"{file_hash(model.path)}-{dataset.root.name}-spectral-v2.npz"
    if cached.exists():
        return dict(np.load(cached))
    sr, product, first, inner = [], [], [], []
    for query in dataset.queries:
        photo = framing.decode_photo(query.image.read_bytes())
        _, saliency = model.run(framing.whole_photo(photo)[None], SALIENCY)
        width, height = photo.image.width, photo.image.height
        # Both maps over the photo alone (no letterbox border), stretched to SIDE x SIDE: a box
        # relative to the map is then relative to the photo.
        residual = spectral_residual(photo.image)
        fine, (left, top, photo_w, photo_h) = photo_grid(saliency[0], width, height)
        inside = fine[int(np.ceil(top)) : int(top + photo_h), int(np.ceil(left)) : int(left + photo_w)]
        model_map = np.asarray(
            Image.fromarray(np.maximum(inside, 0).astype(np.float32), mode="F").resize(
                (SIDE, SIDE), Image.Resampling.BILINEAR
            )
        )
        box = subject_box(residual, SIDE, SIDE)
        crops = [framing.box(photo, box), framing.box(photo, subject_box(model_map * residual, SIDE, SIDE))]
        a, b = model.embed(np.stack(crops))
        sr.append(a)
        product.append(b)
        # The box looked at as a zoom tile is (the embedder's `localize_in_region`): its own first pass
        # (224 px) and the crop its map points to.
        region_vector, region_saliency = model.run(framing.whole_photo(photo, box)[None], SALIENCY)
        first.append(region_vector[0])
        inner.append(model.embed(framing.localized(photo, region_saliency[0], box)[None])[0])
    out = {"sr": np.stack(sr), "product": np.stack(product), "sr_first": np.stack(first), "sr_inner": np.stack(inner)}
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cached, **out)
    return out


def measure(
    model: BaseModel,
    folder: Path,
    framing: Framing,
    args: argparse.Namespace,
    calibration: tuple[float, float],
    label: str = "base",
    transform: Callable[[np.ndarray], np.ndarray] = lambda v: v,
) -> None:
    slope, intercept = calibration
    dataset = load_dataset(folder)
    v = {k: transform(x) if k in ("index", "main") else x for k, x in vectors(model, dataset, framing).items()}
    products, truth, kinds = len(dataset.items), truths(dataset), queries_by_kind(dataset)
    tile_best = best_tile_scores(tiles(model, dataset, framing), v["index"], v["owner"], products, transform)
    main = product_scores(transform(main_crops(model, dataset, framing)), v["index"], v["owner"], products)
    unconvincing = 1 / (1 + np.exp(-(slope * main.max(1) + intercept))) < 0.5
    share, base = float(unconvincing.mean()), 1 + CROP_COST
    found = {
        name: product_scores(transform(vec), v["index"], v["owner"], products)
        for name, vec in boxes(model, dataset, framing).items()
    }
    variants: list[tuple[str, np.ndarray, float]] = [
        ("SALIENCY box (today)", main, base),
        ("spectral-residual box", found["sr"], base),
        ("SALIENCY x residual box", found["product"], base),
    ]
    for logits in args.discount:
        extra = np.where(unconvincing[:, None], np.maximum(main, found["sr"] - logits / slope), main)
        variants.append((f"+ residual box on unconvincing, {logits} logits", extra, base + share * CROP_COST))
        as_tile = np.where(
            unconvincing[:, None],
            np.maximum(main, np.maximum(found["sr_first"], found["sr_inner"]) - logits / slope),
            main,
        )
        variants.append(
            (
                f"+ residual box as a localised tile on unconvincing, {logits} logits",
                as_tile,
                base + share * (1 + CROP_COST),
            )
        )
    # The map's second region as one more localised tile, beside the first (only where there is one).
    second = second_looks(model, dataset, framing)
    second_best = np.maximum(
        product_scores(transform(second["first"]), v["index"], v["owner"], products),
        product_scores(transform(second["inner"]), v["index"], v["owner"], products),
    )
    second_best[~second["has"]] = -9.0
    looks = np.maximum(np.maximum(found["sr_first"], found["sr_inner"]), second_best)
    both = np.where(unconvincing[:, None], np.maximum(main, looks - DISCOUNT_LOGITS / slope), main)
    with_second = share * (1 + CROP_COST) + float((unconvincing & second["has"]).mean()) * (1 + CROP_COST)
    variants.append(("+ residual box and its second region as localised tiles", both, base + with_second))
    for variant, scores, cost in list(variants):
        fused = np.where(unconvincing[:, None], np.maximum(scores, tile_best - DISCOUNT_LOGITS / slope), scores)
        variants.append((f"{variant} + tiles", fused, cost + share * tile_cost(224, 256)))
    for variant, scores, cost in variants:
        rank = ranks(scores, truth)
        report(
            {
                "dataset": folder.name,
                "model": label,
                "variant": variant,
                **recalls(rank, kinds),
                "evaluations": round(cost, 2),
            },
            args.out,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--dataset", type=Path, action="append", required=True)
    parser.add_argument("--discount", type=float, nargs="+", default=[0.0, 0.6, 1.2], help="in logits")
    parser.add_argument("--calibration", type=float, nargs=2, default=(20.71, -7.18), help="slope, intercept")
    parser.add_argument("--adapted", type=Path, help="also adapted to each catalog: this bare base model (v2)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model = BaseModel(args.model)
    framing = Framing(limits=Limits(max_bytes=64 << 20))
    for folder in args.dataset:
        measure(model, folder, framing, args, args.calibration)
        if args.adapted:  # what `imagesearch adapt <folder>` would serve (its defaults: 6 views, 512 dims)
            bare = BaseModel(args.adapted)
            adaptation = fit_adaptation(embedded_generic(bare, folder, 6), AdaptOptions())
            c = adaptation.calibration
            measure(bare, folder, framing, args, (c.slope, c.intercept), "adapted", adaptation.whitening.apply)


if __name__ == "__main__":
    main()
