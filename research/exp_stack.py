#!/usr/bin/env python3
"""A catalog's own whitening combined with the generic one, instead of replacing it.

`imagesearch adapt <catalog>` fits its whitening on the bare backbone (version 2) and drops the generic
whitening a fresh clone serves (version 3). This measures, on each dataset's own catalog, whether the
two are worth more together:

* `catalog`: the catalog's own fit (what `imagesearch adapt` writes today: 512 dims);
* `generic`: the generic fit alone (version 3: 1024 dims);
* `pooled`: the whitening's intra-item covariance from the catalog's and the generic collection's
  view differences together (more, and more varied, differences: the part that is not about any
  catalog), the PCA step from the catalog's clean shots alone;
* `stacked`: the catalog's whitening fitted on the generic whitening's output (v3 as the base);
* `concat w`: both vectors side by side, weighted so that a search scores w x catalog cosine +
  (1 - w) x generic cosine (one vector field: sqrt(w) A(x) (+) sqrt(1 - w) B(x)).

Vectors come from research/exp_backbone.py's cache (the services' framing) and research/exp_generic.py's
embedded collections (`imagesearch adapt`'s own passes), so each row reproduces what the services would
return for that model.

    python research/exp_stack.py var/datasets/generic --dataset ../shared/datasets/dev --dataset var/datasets/judge

Not part of the product (research/README.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from exp_backbone import product_scores, queries_by_kind, ranks, report, summary, truths, vectors
from exp_generic import embedded_generic

from imagesearch.adaptation.build import AdaptOptions, EmbeddedCatalog, fit_adaptation
from imagesearch.adaptation.embedding import BaseModel
from imagesearch.adaptation.whitening import Whitening, fit_learned_whitening
from imagesearch.evaluation.dataset import load_dataset
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.sniff import Limits

Transform = Callable[[np.ndarray], np.ndarray]


def fit_rounds(embedded: EmbeddedCatalog, dimension: int, transform: Transform | None = None) -> Whitening:
    """`imagesearch adapt`'s whitening on (optionally transformed) vectors: every round but the last."""
    t = transform or (lambda v: v)
    rounds = embedded.views.shape[0] - 1
    index = t(embedded.index)
    views = np.concatenate([t(embedded.views[r]) for r in range(rounds)])
    items = np.tile(np.arange(len(index)), rounds)
    return fit_learned_whitening(index, views, items, dimension, 0.5)


def fit_pooled(catalog: EmbeddedCatalog, generic: EmbeddedCatalog, dimension: int) -> Whitening:
    """Intra-item covariance from both collections' view differences, PCA on the catalog's shots only."""
    differences = []
    for embedded in (catalog, generic):
        rounds = embedded.views.shape[0] - 1
        differences.append((embedded.views[:rounds] - embedded.index[None]).reshape(-1, embedded.index.shape[1]))
    diff = np.concatenate(differences).astype(np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(diff.T))
    eigenvalues = np.maximum(eigenvalues, 0.0)
    whiten = eigenvectors / np.sqrt(eigenvalues + 0.5 * eigenvalues.mean())
    clean = catalog.index.astype(np.float64)
    mean = clean.mean(axis=0)
    _, rotation = np.linalg.eigh(np.cov(((clean - mean) @ whiten).T))
    return Whitening(mean.astype(np.float32), (whiten @ rotation[:, ::-1][:, :dimension]).astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("generic", type=Path, help="the generic collection (tools/build_generic_set.py)")
    parser.add_argument("--model", type=Path, default=Path("model_repo/image_embedding/2/model.onnx"))
    parser.add_argument("--dataset", type=Path, action="append", required=True)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.5, 0.7])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model = BaseModel(args.model)
    framing = Framing(limits=Limits(max_bytes=64 << 20))
    generic = embedded_generic(model, args.generic, 6)
    generic_whitening = fit_adaptation(generic, AdaptOptions(views=6, dimension=1024)).whitening
    for folder in args.dataset:
        dataset = load_dataset(folder)
        raw = vectors(model, dataset, framing)
        catalog = embedded_generic(model, folder, 6)
        own = fit_rounds(catalog, 512)
        pooled = fit_pooled(catalog, generic, 512)
        stacked = fit_rounds(catalog, 512, generic_whitening.apply)

        def both(w: float, own: Whitening = own) -> Transform:
            return lambda v: np.concatenate(
                [np.sqrt(w) * own.apply(v), np.sqrt(1 - w) * generic_whitening.apply(v)], axis=1
            )

        variants: dict[str, Transform] = {
            "catalog": own.apply,
            "generic": generic_whitening.apply,
            "pooled": pooled.apply,
            "stacked": lambda v, stacked=stacked: stacked.apply(generic_whitening.apply(v)),
            **{f"concat {w}": both(w) for w in args.weights},
        }
        kinds = queries_by_kind(dataset)
        for name, transform in variants.items():
            scores = product_scores(transform(raw["main"]), transform(raw["index"]), raw["owner"], len(dataset.items))
            rank = ranks(scores, truths(dataset))
            line = {
                "variant": name,
                "dataset": folder.name,
                **summary(rank),
                "kinds": {kind: round(float(np.mean(rank[n] < 1)), 3) for kind, n in kinds.items()},
            }
            report(line, args.out)


if __name__ == "__main__":
    main()
