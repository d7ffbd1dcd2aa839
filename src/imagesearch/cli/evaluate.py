"""`imagesearch eval <dataset>`: measure retrieval quality through the public API.

Same code path as users: the dataset's catalog and distractors are indexed
with UpsertProducts into a catalog of their own (so the live catalog neither
helps nor hurts, and is left as it was), every query goes through Search, and
the catalog is dropped at the end, also when the run fails or is interrupted.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import grpc
from tqdm import tqdm

from imagesearch.cli.common import CliError, Subparsers, add_command
from imagesearch.client.catalog import CatalogItem
from imagesearch.client.channel import open_channel, search_stub
from imagesearch.client.indexer import RetryPolicy, index_catalog
from imagesearch.evaluation.dataset import Dataset, DatasetError, Query, load_dataset
from imagesearch.evaluation.metrics import QueryOutcome, Report, evaluate, evaluate_by_group
from imagesearch.evaluation.misses import render_misses
from imagesearch.v1 import search_pb2, search_pb2_grpc

# Deep enough that MRR is exact for nearly every query (see evaluation.metrics).
DEPTH = 100


EVAL_HELP = "measure Recall@1/5/10, MRR and category precision on a benchmark dataset"

EVAL_EPILOG = """\
The dataset folder holds catalog.csv, distractors.csv (optional), queries.csv and the images
they name, as in ../shared/datasets/dev (see its README for the metric definitions).
When queries_meta.csv has a `variation` column (tools/build_judge_set.py writes one), Recall@1/@10
and category P@10 are also reported per kind of variation.

examples:
  imagesearch eval ../shared/datasets/dev
  imagesearch eval ../shared/datasets/dev --out results/dev.json --queries 50
"""


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "eval", help=EVAL_HELP, description=__doc__, epilog=EVAL_EPILOG)
    p.add_argument("dataset", type=Path, help="dataset folder")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("eval-results.json"),
        metavar="FILE",
        help="JSON result file (default eval-results.json); the misses sheet goes beside it as .misses.png",
    )
    p.add_argument("--queries", type=int, default=0, metavar="N", help="only the first N queries (default: all)")
    p.add_argument("--concurrency", type=int, default=4, metavar="N", help="searches in flight (default 4)")
    p.add_argument("--keep", action="store_true", help="keep the evaluation catalog afterwards (its name is printed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_eval)


def _catalog_items(dataset: Dataset) -> list[CatalogItem]:
    return [
        CatalogItem(product_id=i.product_id, images=(i.image,), title=i.title, category=i.category, source=str(i.image))
        for i in dataset.items
    ]


def _search_all(
    stub: search_pb2_grpc.SearchServiceStub,
    dataset: Dataset,
    catalog: str,
    limit: int,
    concurrency: int,
    progress: bool,
) -> list[QueryOutcome]:
    queries = dataset.queries[:limit] if limit else dataset.queries

    def one(query: Query) -> QueryOutcome:
        request = search_pb2.SearchRequest(
            image=query.image.read_bytes(), top_k=DEPTH, skip_cache=True, catalog=catalog
        )
        started = time.perf_counter()
        reply = stub.Search(request, timeout=60)
        latency = (time.perf_counter() - started) * 1000
        return QueryOutcome(
            query.query_id,
            query.product_id,
            [(h.product_id, h.score, h.category) for h in reply.hits],
            latency,
            reply.predicted_category.category,
        )

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(
            tqdm(
                pool.map(one, queries),
                total=len(queries),
                unit="query",
                desc="searching",
                disable=not progress,
                file=sys.stderr,
                dynamic_ncols=True,
            )
        )


def format_report(report: Report) -> str:
    return "\n".join(
        [
            f"queries               {report.queries}",
            f"Recall@1              {report.recall_at_1:.3f}",
            f"Recall@5              {report.recall_at_5:.3f}",
            f"Recall@10             {report.recall_at_10:.3f}",
            f"MRR                   {report.mrr:.3f}"
            + (f"  (lower bound: {report.beyond_depth} beyond top {DEPTH})" if report.beyond_depth else ""),
            f"category P@10         {report.category_precision_at_10:.3f}",
            f"predicted category    {report.category_prediction_accuracy:.3f} correct",
            f"search latency        p50 {report.latency_p50_ms:.1f} ms, p95 {report.latency_p95_ms:.1f} ms",
        ]
    )


def format_groups(groups: dict[str, Report]) -> str:
    """The per-variation breakdown (datasets whose queries_meta.csv has a `variation` column)."""
    lines = [f"{'variation':<16}{'queries':>8}{'R@1':>8}{'R@10':>8}{'cat. P@10':>11}"]
    for name, r in groups.items():
        lines.append(
            f"{name:<16}{r.queries:>8}{r.recall_at_1:>8.3f}{r.recall_at_10:>8.3f}{r.category_precision_at_10:>11.3f}"
        )
    return "\n".join(lines)


def run_eval(args: argparse.Namespace) -> int:
    try:
        dataset = load_dataset(args.dataset)
    except DatasetError as err:
        raise CliError(str(err)) from None
    catalog = f"eval_{secrets.token_hex(4)}"
    print(
        f"evaluating {args.dataset}: {len(dataset.items)} indexed items, {len(dataset.queries)} queries; "
        f"catalog {catalog} via {args.gateway}",
        file=sys.stderr,
    )
    progress = not args.no_progress
    with open_channel(args.gateway, args.api_key, args.ca) as channel:
        stub = search_stub(channel)
        try:
            started = time.perf_counter()
            indexed = index_catalog(
                args.gateway,
                _catalog_items(dataset),
                16,
                2,
                RetryPolicy(),
                progress=progress,
                catalog=catalog,
                api_key=args.api_key,
                ca_file=args.ca,
            )
            index_seconds = time.perf_counter() - started
            if indexed.failures:
                raise CliError(
                    f"{len(indexed.failures)} item(s) failed to index, first: "
                    f"{indexed.failures[0].product_id}: {indexed.failures[0].message}"
                )
            outcomes = _search_all(stub, dataset, catalog, args.queries, args.concurrency, progress)
        finally:
            if args.keep:
                print(f"kept catalog {catalog}", file=sys.stderr)
            else:
                try:
                    stub.DeleteCatalog(search_pb2.DeleteCatalogRequest(catalog=catalog), timeout=60)
                except grpc.RpcError as err:
                    print(f"warning: could not drop catalog {catalog}: {err.details()}", file=sys.stderr)
    report = evaluate(outcomes, dataset.categories)
    print(format_report(report))
    variations = {q.query_id: q.variation for q in dataset.queries}
    by_variation = evaluate_by_group(outcomes, dataset.categories, variations)
    if by_variation:
        print(format_groups(by_variation))
    sheet = args.out.with_suffix(".misses.png")
    drawn = render_misses(dataset, outcomes, sheet)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "dataset": str(dataset.root),
                "indexed_items": len(dataset.items),
                "index_seconds": round(index_seconds, 2),
                "report": asdict(report),
                "by_variation": {name: asdict(r) for name, r in by_variation.items()},
                "queries": [
                    {
                        "query_id": o.query_id,
                        "product_id": o.product_id,
                        "rank": o.rank(),
                        "variation": variations.get(o.query_id, ""),
                        "latency_ms": round(o.latency_ms, 2),
                        "predicted_category": o.predicted_category,
                        # The whole ranked list (DEPTH deep): re-ranking ideas can be tried on it offline.
                        "top": [[h[0], round(h[1], 5)] for h in o.hits],
                    }
                    for o in outcomes
                ],
            },
            indent=1,
        )
    )
    print(f"wrote {args.out} and {sheet} ({drawn} misses drawn)", file=sys.stderr)
    return 0
