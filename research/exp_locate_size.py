#!/usr/bin/env python3
"""A sharper first pass for small products: the whole photo letterboxed at more than 224 px to find
the product, with and without the localised zoom tiles after it.

research/exp_oracle.py: small judge products are found 0.88 of the time when framed truly, yet the
first pass's 14 x 14 SALIENCY map (224 px) shows a product a fifth of the photo's side in about three
cells and its box holds the wallpaper. A first pass at 288 or 320 px sees it in 4-5 cells, for 1.65 or
2.04 evaluations instead of 1.0; the localised tiles (9.24 evaluations on each unconvincing query) may
then be needed less often. For each first-pass size: the main object's crop (`find_objects`' first
box, embedded at 256 px as the embedder does), exact product-level search against
research/exp_backbone.py's cached index rows, and the main crop fused with the localised tiles
(research/exp_tiles.py, tile 0.6, 1.2 logits, the gateway's rule) on the unconvincing queries.

    python research/exp_locate_size.py model_repo/image_embedding/3/model.onnx \\
        --dataset ../shared/datasets/dev --dataset var/datasets/judge --size 224 288 320
    ... --size 224 --tile-locate 192 --tile-size 224     # cheaper tiles
    ... --size 224 --below 0.5 0.7 0.9 1.01              # tiles on more of the queries

Not part of the product (research/README.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from exp_backbone import CACHE, file_hash, product_scores, queries_by_kind, ranks, recalls, report, truths, vectors
from exp_tiles import localised_tiles

from imagesearch.adaptation.embedding import BaseModel
from imagesearch.contracts.model import SALIENCY
from imagesearch.evaluation.dataset import Dataset, load_dataset
from imagesearch.imaging.detect import find_objects
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.sniff import Limits

TILE_SIDE = 0.6
DISCOUNT_LOGITS = 1.2


def tile_cost(locate: int, size: int) -> float:
    """Four localised tiles: each its first pass and its crop, in evaluations at 224 px."""
    return 4 * (locate**2 + size**2) / 224**2


def main_crops(model: BaseModel, dataset: Dataset, framing: Framing) -> np.ndarray:
    """Each query's main object crop, found by a first pass at `framing.locate_size` (cached)."""
    side = framing.locate_size[0]
    cached = CACHE / f"{file_hash(model.path)}-{dataset.root.name}-locate{side}.npy"
    if cached.exists():
        return np.load(cached)
    crops = []
    for query in dataset.queries:
        photo = framing.decode_photo(query.image.read_bytes())
        _, saliency = model.run(framing.whole_photo(photo)[None], SALIENCY)
        found = find_objects(photo.image, saliency[0])
        crops.append(model.embed(framing.box(photo, found[0].box)[None])[0])
    out = np.stack(crops)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(cached, out)
    return out


def tiles(model: BaseModel, dataset: Dataset, framing: Framing) -> tuple[np.ndarray, np.ndarray]:
    sizes = f"{framing.locate_size[0]}-{framing.size[0]}"
    cached = CACHE / f"{file_hash(model.path)}-{dataset.root.name}-tiles{TILE_SIDE}-{sizes}.npz"
    if cached.exists():
        data = np.load(cached)
        return data["firsts"], data["crops"]
    firsts, crops = localised_tiles(model, dataset, framing, TILE_SIDE)
    np.savez(cached, firsts=firsts, crops=crops)
    return firsts, crops


def best_tile_scores(
    tiled: tuple[np.ndarray, np.ndarray],
    index: np.ndarray,
    owner: np.ndarray,
    products: int,
    transform: Callable[[np.ndarray], np.ndarray] = lambda v: v,
) -> np.ndarray:
    """(queries, products): each product's best score over a query's four tiles, their first passes
    and their crops (`tiles`' vectors, `transform`ed first: an adaptation's whitening)."""
    firsts, crops = tiled
    n = len(firsts)

    def best(vectors_: np.ndarray) -> np.ndarray:
        return product_scores(transform(vectors_.reshape(n * 4, -1)), index, owner, products).reshape(n, 4, -1).max(1)

    return np.maximum(best(firsts), best(crops))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--dataset", type=Path, action="append", required=True)
    parser.add_argument("--size", type=int, nargs="+", default=[224, 288, 320], help="first-pass sizes, px")
    parser.add_argument("--calibration", type=float, nargs=2, default=(20.71, -7.18), help="slope, intercept")
    parser.add_argument("--tile-locate", type=int, default=224, help="px of each tile's first pass")
    parser.add_argument("--tile-size", type=int, default=256, help="px each tile's crop is embedded at")
    parser.add_argument(
        "--below",
        type=float,
        nargs="+",
        default=[0.5],
        help="tiles when the best hit's probability is below (0.5: the gateway's)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model = BaseModel(args.model)
    limits = Limits(max_bytes=64 << 20)
    slope, intercept = args.calibration
    for folder in args.dataset:
        dataset = load_dataset(folder)
        base = Framing(limits=limits)
        v = vectors(model, dataset, base)
        products, truth, kinds = len(dataset.items), truths(dataset), queries_by_kind(dataset)
        tiler = Framing(limits=limits, size=(args.tile_size,) * 2, locate_size=(args.tile_locate,) * 2)
        cost_of_tiles = tile_cost(args.tile_locate, args.tile_size)
        tile_best = best_tile_scores(tiles(model, dataset, tiler), v["index"], v["owner"], products)
        for size in args.size:
            framing = Framing(limits=limits, locate_size=(size, size))
            main = product_scores(main_crops(model, dataset, framing), v["index"], v["owner"], products)
            probability = 1 / (1 + np.exp(-(slope * main.max(1) + intercept)))
            first_cost = (size / 224) ** 2 + 256**2 / 224**2
            variants = [("main crop only", main, first_cost, probability < 0.5)]
            for below in args.below:
                unconvincing = probability < below
                fused = np.where(unconvincing[:, None], np.maximum(main, tile_best - DISCOUNT_LOGITS / slope), main)
                cost = first_cost + float(unconvincing.mean()) * cost_of_tiles
                variants.append((f"+ localised tiles when below {below}", fused, cost, unconvincing))
            for variant, scores, cost, unconvincing in variants:
                rank = ranks(scores, truth)
                report(
                    {
                        "dataset": folder.name,
                        "first pass px": size,
                        "tiles px": [args.tile_locate, args.tile_size],
                        "variant": variant,
                        **recalls(rank, kinds),
                        "unconvincing": round(float(unconvincing.mean()), 3),
                        "evaluations": round(cost, 2),
                    },
                    args.out,
                )


if __name__ == "__main__":
    main()
