#!/usr/bin/env python3
"""Smaller products in the views a whitening is fitted on: does the base model then match small products better?

A small product, once framed (by the first pass or a zoom tile), is a few dozen pixels of the photo
upsampled to 256 px: blurrier than anything `imagesearch adapt`'s synthetic views show, whose product
takes 25-95 % of the frame's longer side (`synthetic.EXTENT`). Here the generic whitening of the
base model (tools/build_generic_set.py's emoji collection, 6 views, 1024 dims: version 3's recipe) is
fitted with views down to `--min-extent` of the frame, and applied to the bare backbone's (version 2)
vectors of each dataset: the main crop alone, and with the localised zoom tiles on the unconvincing
queries (research/exp_locate_size.py; unconvincing by each fit's own calibration). An adapted graph is
the base graph with the whitening appended and the same SALIENCY, so this is what the served model
would return.

    python research/exp_view_extent.py var/datasets/generic --dataset ../shared/datasets/dev \\
        --dataset var/datasets/judge --min-extent 0.25 0.1

Not part of the product (research/README.md).
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np
from exp_backbone import product_scores, queries_by_kind, ranks, recalls, report, truths, vectors
from exp_generic import embedded_generic
from exp_locate_size import DISCOUNT_LOGITS, best_tile_scores, tile_cost, tiles

from imagesearch.adaptation import build
from imagesearch.adaptation.build import AdaptOptions, EmbeddedCatalog, fit_adaptation
from imagesearch.adaptation.embedding import BaseModel
from imagesearch.adaptation.synthetic import EXTENT, make_view
from imagesearch.evaluation.dataset import load_dataset
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.sniff import Limits

DIMENSION = 1024  # tools/build_generic_set.DIMENSION


def embedded(model: BaseModel, folder: Path, options: AdaptOptions, min_extent: float) -> EmbeddedCatalog:
    """The views `adapt` makes, with the product's extent drawn from [min_extent, EXTENT[1]] instead."""
    build.make_view = functools.partial(make_view, extent_range=(min_extent, EXTENT[1]))  # type: ignore[assignment]
    try:
        return embedded_generic(model, folder, options.views, tag=f"extent{min_extent}")
    finally:
        build.make_view = make_view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("generic", type=Path, help="the generic collection (tools/build_generic_set.py)")
    parser.add_argument("--model", type=Path, default=Path("model_repo/image_embedding/2/model.onnx"))
    parser.add_argument("--dataset", type=Path, action="append", required=True)
    parser.add_argument("--min-extent", type=float, nargs="+", default=[0.25, 0.1])
    parser.add_argument("--views", type=int, default=6)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model = BaseModel(args.model)
    framing = Framing(limits=Limits(max_bytes=64 << 20))
    sets = []
    for folder in args.dataset:
        dataset = load_dataset(folder)
        sets.append((folder, dataset, vectors(model, dataset, framing), tiles(model, dataset, framing)))
    for min_extent in args.min_extent:
        options = AdaptOptions(views=args.views, dimension=DIMENSION)
        adaptation = fit_adaptation(embedded(model, args.generic, options, min_extent), options)
        white, slope, intercept = (
            adaptation.whitening.apply,
            adaptation.calibration.slope,
            adaptation.calibration.intercept,
        )
        for folder, dataset, v, tiled in sets:
            products, truth, kinds = len(dataset.items), truths(dataset), queries_by_kind(dataset)
            index = white(v["index"])
            main = product_scores(white(v["main"]), index, v["owner"], products)
            tile_best = best_tile_scores(tiled, index, v["owner"], products, white)
            unconvincing = 1 / (1 + np.exp(-(slope * main.max(1) + intercept))) < 0.5
            fused = np.where(unconvincing[:, None], np.maximum(main, tile_best - DISCOUNT_LOGITS / slope), main)
            for variant, scores, cost in (
                ("main crop", main, 1 + 256**2 / 224**2),
                ("+ localised tiles", fused, 1 + 256**2 / 224**2 + float(unconvincing.mean()) * tile_cost(224, 256)),
            ):
                rank = ranks(scores, truth)
                report(
                    {
                        "dataset": folder.name,
                        "min extent": min_extent,
                        "variant": variant,
                        **recalls(rank, kinds),
                        "evaluations": round(cost, 2),
                        "calibration": [round(slope, 2), round(intercept, 2)],
                        "synthetic R@1": adaptation.synthetic_recall_at_1,
                    },
                    args.out,
                )


if __name__ == "__main__":
    main()
