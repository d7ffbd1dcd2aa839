"""`imagesearch index` and `imagesearch delete`: maintain the catalog through the gateway.

The work is `imagesearch.client.indexer`; this module is the command line around it: options,
the progress bar, and the failure report.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from imagesearch.cli.common import CliError, Subparsers, add_command, format_table, int_up_to, positive_int
from imagesearch.client.catalog import CatalogError, load_catalog
from imagesearch.client.channel import open_channel, search_stub
from imagesearch.client.indexer import BatchOutcome, Failure, RetryPolicy, index_catalog
from imagesearch.contracts.limits import MAX_PRODUCTS_PER_UPSERT
from imagesearch.v1 import search_pb2

# --- reporting -------------------------------------------------------------


def failure_report(failures: Sequence[Failure], limit: int | None = None) -> str:
    """The failures in full (no truncation: this is what someone will act on), the first `limit` of them."""
    shown = failures if limit is None else failures[:limit]
    rows = [[f.product_id, f.image, f.reason, f.message] for f in shown]
    table = format_table(["product_id", "image", "reason", "message"], rows, width=1 << 30)
    if len(shown) < len(failures):
        table += f"\n... and {len(failures) - len(shown)} more"
    return table


def reasons_summary(failures: Sequence[Failure]) -> str:
    """`CORRUPT 2, RPC UNAVAILABLE 14`: the report's shape at a glance."""
    counts: dict[str, int] = {}
    for f in failures:
        counts[f.reason] = counts.get(f.reason, 0) + 1
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def summary_line(outcome: BatchOutcome) -> str:
    parts = [f"{len(outcome.indexed)} indexed"]
    if outcome.skipped:
        parts.append(f"{len(outcome.skipped)} already indexed (skipped)")
    parts.append(f"{len(outcome.failed_products)} failed")
    return ", ".join(parts)


# --- commands --------------------------------------------------------------


INDEX_HELP = "add or update products from a CSV or an image folder"

INDEX_DESCRIPTION = """\
Send products to the gateway (UpsertProducts) in batches.

SOURCE is either a CSV with columns product_id,title,category,brand,price,image,attributes
(only product_id and image are required; image is relative to the CSV's folder;
attributes is a JSON object such as {"color": "red"}; repeat a product_id on several
rows to give it several images), or a folder of .jpg/.png/.webp images: product id and
title are the file name without extension, category the sub-folder ("" at the top).

Images are sent with their absolute path as uri, which is what search results show.
Re-running is safe: upsert replaces products by id. Failed products are listed at the
end with the reason, and the exit status is 1 when anything failed.
"""

INDEX_EPILOG = """\
examples:
  imagesearch index demo/catalog.csv
  imagesearch index ~/photos/shoes --batch 32 --concurrency 4
  imagesearch index demo/catalog.csv --skip-existing   # only new or changed products
"""

DELETE_HELP = "remove products by id"

DELETE_DESCRIPTION = """\
Remove products and all their images from the catalog (DeleteProducts).
"""

DELETE_EPILOG = """\
example:
  imagesearch delete p00496c64 p006990d5
"""


def add_parsers(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "index", help=INDEX_HELP, description=INDEX_DESCRIPTION, epilog=INDEX_EPILOG)
    p.add_argument("source", type=Path, help="catalog CSV file or folder of images")
    p.add_argument(
        "--batch",
        type=int_up_to(MAX_PRODUCTS_PER_UPSERT),
        default=16,
        metavar="N",
        help=f"products per request, at most {MAX_PRODUCTS_PER_UPSERT} (default 16)",
    )
    p.add_argument("--concurrency", type=positive_int, default=2, metavar="N", help="requests in flight (default 2)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds per request (default 120)")
    p.add_argument(
        "--retries",
        type=positive_int,
        default=5,
        metavar="N",
        help="attempts per batch while the gateway is UNAVAILABLE, times out or is busy (RESOURCE_EXHAUSTED), "
        "with jittered exponential back-off (default 5)",
    )
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip products the gateway already has with the same metadata and image paths",
    )
    p.add_argument(
        "--catalog",
        default="",
        metavar="NAME",
        help="named catalog to write to ([a-z0-9_]; default: the default catalog)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in CI logs)")
    p.set_defaults(func=run_index)

    d = add_command(subparsers, "delete", help=DELETE_HELP, description=DELETE_DESCRIPTION, epilog=DELETE_EPILOG)
    d.add_argument("product_ids", nargs="+", metavar="PRODUCT_ID")
    d.add_argument("--catalog", default="", metavar="NAME", help="named catalog (default: the default catalog)")
    d.set_defaults(func=run_delete)


def run_index(args: argparse.Namespace) -> int:
    try:
        items = load_catalog(args.source)
    except CatalogError as err:
        raise CliError(str(err)) from None
    n_images = sum(len(i.images) for i in items)
    print(f"indexing {len(items)} products ({n_images} images) from {args.source} via {args.gateway}", file=sys.stderr)
    policy = RetryPolicy(attempts=args.retries, timeout=args.timeout)
    started = time.perf_counter()
    outcome = index_catalog(
        args.gateway,
        items,
        args.batch,
        args.concurrency,
        policy,
        skip_existing=args.skip_existing,
        progress=not args.no_progress,
        catalog=args.catalog,
        api_key=args.api_key,
        ca_file=args.ca,
    )
    elapsed = time.perf_counter() - started
    return report(outcome, elapsed)


def report(outcome: BatchOutcome, elapsed: float) -> int:
    if outcome.failures:
        print(f"\n{len(outcome.failures)} error(s):")
        print(failure_report(outcome.failures))
        print(f"\nfailures by reason: {reasons_summary(outcome.failures)}")
    print(f"{summary_line(outcome)} in {elapsed:.1f} s")
    return 1 if outcome.failed_products else 0


def run_delete(args: argparse.Namespace) -> int:
    with open_channel(args.gateway, args.api_key, args.ca) as channel:
        response = search_stub(channel).DeleteProducts(
            search_pb2.DeleteProductsRequest(product_ids=args.product_ids, catalog=args.catalog), timeout=30.0
        )
    for pid in response.deleted:
        print(f"deleted    {pid}")
    for pid in response.not_found:
        print(f"not found  {pid} (nothing to delete)")
    return 0
