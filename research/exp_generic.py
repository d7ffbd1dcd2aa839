#!/usr/bin/env python3
"""A generic learned whitening for the base model: fitted on products of no benchmark, measured on all.

The generic collection (tools/build_generic_set.py: Debian's emoji objects) goes through `imagesearch
adapt`'s own passes once (`imagesearch.adaptation.build.embed_catalog`: clean shots and synthetic
views, embedded by the base model; cached), then whitening variants (views, dimension, shrinkage) are
fitted on it with `fit_adaptation` and applied to the base model's cached vectors of each dataset
(research/exp_backbone.py's cache: the services' framing, localisation and index rows). An adapted
graph is the base graph with the whitening appended and the same SALIENCY, so applying the whitening
to the base vectors is exactly what the adapted model would return.

    python research/exp_generic.py var/datasets/generic --dataset ../shared/datasets/dev \\
        --dataset var/datasets/judge --views 6 10 --dimension 512 768 --shrinkage 0.5 1.0

Not part of the product (research/README.md).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from exp_backbone import CACHE, file_hash, product_scores, queries_by_kind, ranks, report, summary, truths, vectors

from imagesearch.adaptation.build import AdaptOptions, EmbeddedCatalog, embed_catalog, fit_adaptation
from imagesearch.adaptation.embedding import BaseModel
from imagesearch.cli.adapt import catalog_images
from imagesearch.evaluation.dataset import load_dataset
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.sniff import Limits


def embedded_generic(model: BaseModel, folder: Path, views: int, tag: str = "") -> EmbeddedCatalog:
    """`imagesearch adapt`'s passes over `folder` (cached; `tag` names a variant of the views)."""
    cached = CACHE / f"generic-{file_hash(model.path)}-{folder.name}-{views}{'-' + tag if tag else ''}.npz"
    images = catalog_images([folder])
    if cached.exists():
        data = np.load(cached)
        return EmbeddedCatalog(images, data["index"], data["views"], [], [], {})
    embedded = embed_catalog(images, model, AdaptOptions(views=views))
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cached, index=embedded.index, views=embedded.views)
    print(f"embedded {len(images)} generic shots x {views + 1} views in {embedded.seconds}")
    return embedded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("generic", type=Path, help="the generic collection (tools/build_generic_set.py)")
    parser.add_argument("--model", type=Path, default=Path("model_repo/image_embedding/2/model.onnx"))
    parser.add_argument("--dataset", type=Path, action="append", required=True)
    parser.add_argument("--views", type=int, nargs="+", default=[6])
    parser.add_argument("--dimension", type=int, nargs="+", default=[512])
    parser.add_argument("--shrinkage", type=float, nargs="+", default=[0.5])
    parser.add_argument("--out", type=Path, help="append one JSON line per variant and dataset")
    args = parser.parse_args()
    model = BaseModel(args.model)
    framing = Framing(limits=Limits(max_bytes=64 << 20))
    sets = [(load_dataset(folder), folder) for folder in args.dataset]
    raw = {folder.name: vectors(model, dataset, framing) for dataset, folder in sets}
    embedded = embedded_generic(model, args.generic, max(args.views))
    for views, dimension, shrinkage in itertools.product(args.views, args.dimension, args.shrinkage):
        # Rounds 0..views-1 fit and the last one calibrates, as `imagesearch adapt --views <views>` would.
        rounds = np.concatenate([embedded.views[:views], embedded.views[-1:]])
        subset = EmbeddedCatalog(embedded.kept, embedded.index, rounds, [], [], {})
        adaptation = fit_adaptation(subset, AdaptOptions(views=views, dimension=dimension, shrinkage=shrinkage))
        whitening = adaptation.whitening
        for dataset, folder in sets:
            v = raw[folder.name]
            scores = product_scores(
                whitening.apply(v["main"]), whitening.apply(v["index"]), v["owner"], len(dataset.items)
            )
            rank = ranks(scores, truths(dataset))
            kinds = queries_by_kind(dataset)
            line = {
                "variant": {"views": views, "dimension": dimension, "shrinkage": shrinkage},
                "dataset": folder.name,
                **summary(rank),
                "kinds": {kind: round(float(np.mean(rank[n] < 1)), 3) for kind, n in kinds.items()},
                "synthetic_recall_at_1": adaptation.synthetic_recall_at_1,
            }
            report(line, args.out)


if __name__ == "__main__":
    main()
