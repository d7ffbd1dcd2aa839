#!/usr/bin/env python3
"""A zoom hedge for products too small to be framed: when the main crop's best match is unconvincing,
also search overlapping tiles of the photo, each product scoring its best of the main crop and the tiles.

research/exp_oracle.py: no small judge product is framed by the first pass (its box holds the
wallpaper), yet framed truly they are found 0.88 of the time. A tile (a corner of the photo, `--tile`
of its side) holds such a product at 2-4x the share of the frame the whole photo gives it. Only the
queries whose best hit's same-product probability is below 0.5 (the whole-photo hedge's rule) pay for
the tiles, so the cost per query is reported as the mean over all queries. Vectors: the model file
given (v3 by default), exact search against research/exp_backbone.py's cached index rows.

    python research/exp_tiles.py model_repo/image_embedding/3/model.onnx --dataset var/datasets/judge

Not part of the product (research/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
from exp_backbone import product_scores, queries_by_kind, ranks, report, truths, vectors
from exp_generic import embedded_generic

from imagesearch.adaptation.build import AdaptOptions, fit_adaptation
from imagesearch.adaptation.embedding import BaseModel
from imagesearch.contracts.model import SALIENCY
from imagesearch.evaluation.dataset import Dataset, load_dataset
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.sniff import Limits
from imagesearch_gateway.ranking import zoom_tiles


def localised_tiles(model: BaseModel, dataset: Dataset, framing: Framing, side: float) -> tuple[np.ndarray, np.ndarray]:
    """Each tile through the embedder's two passes, as if it were the photo: (query, tile, D) vectors
    of the tile's first pass (letterboxed at the localisation size: its EMBEDDING comes with the
    SALIENCY map) and of the crop that map points to (at the embedding size)."""
    firsts, crops = [], []
    for query in dataset.queries:
        photo = framing.decode_photo(query.image.read_bytes())
        parts = [dataclasses.astuple(t) for t in zoom_tiles(side)]
        first, saliency = model.run(np.stack([framing.whole_photo(photo, part) for part in parts]), SALIENCY)
        firsts.append(first)
        crops.append(model.embed(np.stack([framing.localized(photo, m, part) for m, part in zip(saliency, parts)])))
    return np.stack(firsts), np.stack(crops)


def measure(
    model: BaseModel,
    folder: Path,
    framing: Framing,
    args: argparse.Namespace,
    slope: float,
    intercept: float,
    label: str,
    transform: Callable[[np.ndarray], np.ndarray] = lambda v: v,
) -> None:
    dataset = load_dataset(folder)
    v = vectors(model, dataset, framing)
    products, truth = len(dataset.items), truths(dataset)
    index = transform(v["index"])
    main = product_scores(transform(v["main"]), index, v["owner"], products)
    unconvincing = 1 / (1 + np.exp(-(slope * main.max(1) + intercept))) < 0.5
    kinds = queries_by_kind(dataset)

    def line(variant: str, rank: np.ndarray, **extra: object) -> None:
        report(
            {
                "model": label,
                "dataset": folder.name,
                "variant": variant,
                "R@1": round(float(np.mean(rank < 1)), 3),
                "R@10": round(float(np.mean(rank < 10)), 3),
                **extra,
                "kinds": {k: round(float(np.mean(rank[n] < 1)), 3) for k, n in kinds.items()},
            },
            args.out,
        )

    line("main crop only", ranks(main, truth), unconvincing=round(float(unconvincing.mean()), 3))
    tiler = Framing(limits=framing.limits, size=(args.tile_size, args.tile_size))
    for side in args.tile:
        crops = []
        for query in dataset.queries:
            photo = framing.decode_photo(query.image.read_bytes())
            if args.mode == "crop":  # as the embedder frames a caller's region: the bytes, cropped square
                data = query.image.read_bytes()
                pixels = [tiler.plain(data, t) for t in zoom_tiles(side)]
            else:
                pixels = [tiler.box(photo, dataclasses.astuple(t)) for t in zoom_tiles(side)]
            crops.append(model.embed(np.stack(pixels)))
        tile_scores = product_scores(transform(np.concatenate(crops)), index, v["owner"], products)
        best_tile = tile_scores.reshape(len(dataset.queries), 4, products).max(1)
        for logits in args.penalty:
            # The penalty in the calibration's logits: the same shift of same-product odds for every model.
            fused = np.where(unconvincing[:, None], np.maximum(main, best_tile - logits / slope), main)
            line(
                f"tiles {side} at {args.tile_size} px, penalty {logits} logits, when unconvincing",
                ranks(fused, truth),
                extra_evaluations=round(float(unconvincing.mean()) * 4 * args.tile_size**2 / 224**2, 2),
            )
        if not args.localise:
            continue
        # Each tile localised as a photo is: its first pass (224 px) and the crop its map shows (256 px).
        firsts, crops = localised_tiles(model, dataset, framing, side)
        n = len(dataset.queries)
        first_scores = product_scores(transform(firsts.reshape(n * 4, -1)), index, v["owner"], products)
        first_scores = first_scores.reshape(n, 4, products)
        crop_scores = product_scores(transform(crops.reshape(n * 4, -1)), index, v["owner"], products)
        crop_scores = crop_scores.reshape(n, 4, products)
        share = float(unconvincing.mean())
        # Which tiles get their crop: all, or the `keep` whose first pass matched best.
        order = np.argsort(-first_scores.max(2), axis=1)
        for keep in (4, 2, 1):
            chosen = np.zeros((n, 4), bool)
            np.put_along_axis(chosen, order[:, :keep], True, axis=1)
            crops_kept = np.where(chosen[:, :, None], crop_scores, -9.0).max(1)
            for with_first in (False, True) if keep == 4 else (True,):
                best = np.maximum(crops_kept, first_scores.max(1)) if with_first else crops_kept
                for logits in args.penalty:
                    fused = np.where(unconvincing[:, None], np.maximum(main, best - logits / slope), main)
                    cost = 4 + keep * 256**2 / 224**2  # every tile's first pass, then `keep` crops
                    line(
                        f"tiles {side} localised: crops of {keep} tile(s){' + tile first passes' if with_first else ''}, "
                        f"penalty {logits} logits, when unconvincing",
                        ranks(fused, truth),
                        extra_evaluations=round(share * cost, 2),
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--dataset", type=Path, action="append", required=True)
    parser.add_argument("--tile", type=float, nargs="+", default=[0.5, 0.6])
    parser.add_argument("--calibration", type=float, nargs=2, default=(20.71, -7.18), help="slope, intercept")
    parser.add_argument("--penalty", type=float, nargs="+", default=[0.0, 0.6, 1.2], help="in logits")
    parser.add_argument("--mode", choices=("pad", "crop"), default="pad", help="how a tile is framed")
    parser.add_argument("--tile-size", type=int, default=256, help="px each tile is embedded at")
    parser.add_argument("--localise", action="store_true", help="also each tile through both passes")
    parser.add_argument("--adapted", type=Path, help="also adapted to each catalog: this bare base model (v2)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    framing = Framing(limits=Limits(max_bytes=64 << 20))
    model = BaseModel(args.model, threads=2)
    for folder in args.dataset:
        measure(model, folder, framing, args, *args.calibration, label=args.model.name)
        if args.adapted:
            bare = BaseModel(args.adapted, threads=2)
            adaptation = fit_adaptation(embedded_generic(bare, folder, 6), AdaptOptions())
            c = adaptation.calibration
            measure(bare, folder, framing, args, c.slope, c.intercept, "adapted", adaptation.whitening.apply)


if __name__ == "__main__":
    main()
