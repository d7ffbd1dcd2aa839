"""`imagesearch adapt <catalog>...`: adapt the embedding to a catalog, as a new model version.

Makes synthetic shopper photos from the catalog's own product shots (cut out,
pasted on procedural scenes, warped, relit, blurred, JPEG-compressed), embeds
them with the base model and fits a learned whitening: a projection that shrinks
the directions in which photos of one product differ (background, light,
framing) and keeps the ones in which products differ, in fewer dimensions
(512 instead of 1280: a smaller, faster index). It also fits the same-product
probability on further views. No gradient training: a catalog of ~1,500 images
takes a few minutes on a 2-core CPU.

The result is written as the next version of the Triton model (model_repo/
image_embedding/<N>/, with adaptation.json saying how it was made). Triton serves
the newest version at its next start; the new vectors go to a new collection, so
index the catalog again after adapting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from tqdm import tqdm

from imagesearch.cli.common import CliError, Subparsers, add_command, positive_int
from imagesearch.client.catalog import CatalogError, load_catalog
from imagesearch.common.config import options_from
from imagesearch.contracts.model import MODEL_NAME, model_dir

ADAPT_HELP = "adapt the embedding to a catalog (writes a new model version)"

ADAPT_EPILOG = """\
examples:
  imagesearch adapt ../shared/datasets/dev          # a dataset folder: catalog.csv + distractors.csv
  imagesearch adapt shop/catalog.csv --views 2      # a catalog CSV (as `imagesearch index` reads it)
  imagesearch adapt photos/ --dimension 256         # an image folder; a smaller index

then restart the stack (`imagesearch up`) and index the catalog again.
To go back to the base model, delete the adapted version's folder.

environment:
  EMBEDDER_IMAGE_SIZE    the embedder's input size; views and shots are framed at it (default 256)
  EMBEDDER_RESIZE_MODE   how the embedder frames catalog images (default crop)
  IMAGESEARCH_HOME       the checkout whose model_repo/ to write to
"""


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "adapt", help=ADAPT_HELP, description=__doc__, epilog=ADAPT_EPILOG, gateway=False)
    p.add_argument(
        "catalogs",
        nargs="+",
        type=Path,
        metavar="CATALOG",
        help="a dataset folder (catalog.csv, and distractors.csv if present), a catalog CSV or an image folder",
    )
    p.add_argument(
        "--views", type=int, default=6, help="synthetic photos per catalog image for the fit (default: %(default)s)"
    )
    p.add_argument(
        "--dimension", type=int, default=512, help="dimensions of the adapted embedding (default: %(default)s)"
    )
    p.add_argument(
        "--shrinkage",
        type=float,
        default=0.5,
        help="eigenvalue shrinkage, x the mean eigenvalue; higher is more conservative (default: %(default)s)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=int(os.environ.get("EMBEDDER_IMAGE_SIZE", "256")),
        help="input size the embedder uses (default: $EMBEDDER_IMAGE_SIZE or 256)",
    )
    p.add_argument(
        "--resize-mode",
        choices=("crop", "pad"),
        default=os.environ.get("EMBEDDER_RESIZE_MODE", "crop"),
        help="how the embedder frames catalog images (default: $EMBEDDER_RESIZE_MODE or crop)",
    )
    p.add_argument("--model-repo", type=Path, help="Triton model repository (default: model_repo/ of the checkout)")
    p.add_argument(
        "--base-version", type=int, help="version to adapt (default: the newest version that is not adapted)"
    )
    p.add_argument("--version", type=int, help="version number to write (default: the next free one)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the synthetic views (default: %(default)s)")
    p.add_argument(
        "--workers", type=positive_int, default=os.cpu_count() or 2, help="threads making views (default: CPU count)"
    )
    p.add_argument(
        "--learned-localisation",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also learn where products are from the synthetic views' true boxes and multiply it into the "
        "first pass's SALIENCY map that frames the query (~1 minute more per 1,500 images). Off by default: "
        "through the services it framed more small products right but chose worse among several, with no "
        "net gain (docs/quality.md)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars (e.g. in CI logs)")
    p.set_defaults(func=run)


def catalog_images(sources: list[Path]) -> list[tuple[str, Path]]:
    """(product id, image) for every image of every source, in order, each image once."""
    seen: set[Path] = set()
    images: list[tuple[str, Path]] = []
    for source in sources:
        if source.is_dir() and (source / "catalog.csv").is_file():
            files = [source / "catalog.csv"] + (
                [source / "distractors.csv"] if (source / "distractors.csv").is_file() else []
            )
        else:
            files = [source]
        for path in files:
            try:
                items = load_catalog(path)
            except CatalogError as err:
                raise CliError(str(err), exit_code=2) from None
            for item in items:
                for image in item.images:
                    if image.resolve() not in seen:
                        seen.add(image.resolve())
                        images.append((item.product_id, image))
    return images


def _model_dir(args: argparse.Namespace) -> Path:
    if args.model_repo is not None:
        return model_dir(args.model_repo)
    from imagesearch.stack.local import StackError, find_repo_root

    try:
        return model_dir(find_repo_root() / "model_repo")
    except StackError as err:
        raise CliError(f"{err}; or pass --model-repo", exit_code=2) from None


def run(args: argparse.Namespace) -> int:
    from imagesearch.adaptation.build import AdaptationError, AdaptOptions, adapt
    from imagesearch.adaptation.embedding import BaseModel
    from imagesearch.adaptation.repository import RepositoryError, base_model, write_version
    from imagesearch.adaptation.whitening import WhiteningError

    started = time.perf_counter()
    directory = _model_dir(args)
    try:
        base_version, base_path = base_model(directory, args.base_version)
    except RepositoryError as err:
        raise CliError(str(err)) from None
    images = catalog_images(args.catalogs)
    options = options_from(args, AdaptOptions)  # the options are named as the flags
    print(
        f"adapting {MODEL_NAME} v{base_version} to {len(images)} catalog images "
        f"({options.views} synthetic views each + 1 to calibrate, {options.image_size} px, -> {options.dimension} dims)"
    )
    bars: list[tqdm[NoReturn]] = []

    def progress(what: str, total: int) -> Callable[[int], None]:
        for finished in bars:  # one pass at a time: the previous bar is done
            finished.close()
        bar = tqdm(total=total, desc=what, unit="img", disable=args.no_progress)
        bars.append(bar)

        def tick(done: int) -> None:
            bar.update(done)

        return tick

    try:
        result = adapt(images, BaseModel(base_path), options, progress)
    except (AdaptationError, WhiteningError) as err:
        raise CliError(str(err)) from None
    finally:
        for bar in bars:
            bar.close()
    for line in result.skipped:
        print(f"  skipped {line}")
    before, after = result.synthetic_recall_at_1
    calibration = result.calibration
    # Held-out synthetic views whose product the first pass's box finds (overlap >= 0.5).
    found_before, found_after = result.localisation_found
    localisation_found = {"base": round(found_before, 4), "adapted": round(found_after, 4)}
    record = {
        "base_version": base_version,
        "catalogs": [str(c) for c in args.catalogs],
        "items": result.items,
        "views": result.views,
        "options": vars(options),
        "method": "learned whitening (intra-item covariance of synthetic view - clean shot differences, "
        "shrinkage x mean eigenvalue, then PCA of the whitened shots)",
        "same_product_calibration": [round(calibration.slope, 4), round(calibration.intercept, 4)],
        "calibration_views": result.items,
        "calibration_log_loss": round(result.calibration_log_loss, 4),
        "synthetic_recall_at_1": {"base": round(before, 4), "adapted": round(after, 4)},
        "learned_localisation": {
            "in_saliency": result.objectness is not None,
            "found": localisation_found,
            "note": result.localisation_note,
        },
        "seconds": {k: round(v, 1) for k, v in result.seconds.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    try:
        version, target = write_version(
            directory,
            base_version,
            base_path,
            result.whitening,
            result.calibration,
            record,
            args.version,
            result.objectness,
        )
    except RepositoryError as err:
        raise CliError(str(err)) from None
    summary = {
        "synthetic_recall_at_1": record["synthetic_recall_at_1"],
        "same_product_calibration": record["same_product_calibration"],
    }
    if result.objectness is not None:
        summary["localisation_found"] = localisation_found
    print(json.dumps(summary))
    print(
        f"wrote {MODEL_NAME} version {version} ({target}) in {time.perf_counter() - started:.0f} s: "
        f"{result.whitening.input_dimension} -> {result.whitening.dimension} dims"
    )
    print("next: restart the stack (imagesearch up) so Triton serves it, then index the catalog again")
    return 0
