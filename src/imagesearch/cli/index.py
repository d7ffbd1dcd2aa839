"""`imagesearch index` and `imagesearch delete`: maintain the catalog through the gateway.

Every image is sent with its absolute path as `uri`, so search hits name a
file that `imagesearch search --sheet` can open from any working directory
(on the machine that indexed it; elsewhere the sheet shows a placeholder).

Nothing is dropped silently: each product ends up indexed, skipped (already
indexed, unchanged) or in the failure report, and a batch whose RPC keeps
failing is reported product by product after a few retries with back-off.
Upsert is idempotent by product_id, so re-running after a failure is safe.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from tqdm import tqdm

from imagesearch.cli.catalog import CatalogError, CatalogItem, load_catalog
from imagesearch.cli.common import (
    RETRYABLE_CODES,
    CliError,
    display_path,
    format_table,
    gateway_option,
    open_channel,
    search_stub,
)
from imagesearch.v1 import common_pb2, search_pb2, search_pb2_grpc

_REASON_PREFIX = "IMAGE_ERROR_REASON_"
# Failures that describe the endpoint, not the request: every later batch would fail alike.
_ENDPOINT_CODES = frozenset(
    {
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)


@dataclass(frozen=True)
class Failure:
    """One line of the error report."""

    product_id: str
    image: str
    reason: str
    message: str


@dataclass
class BatchOutcome:
    indexed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    images: int = 0  # images accounted for (indexed, skipped or failed), for the progress bar
    failures: list[Failure] = field(default_factory=list)
    failed_products: set[str] = field(default_factory=set)

    def merge(self, other: BatchOutcome) -> None:
        self.indexed += other.indexed
        self.skipped += other.skipped
        self.images += other.images
        self.failures += other.failures
        self.failed_products |= other.failed_products

    def fail(self, item: CatalogItem, image: str, reason: str, message: str) -> None:
        self.failures.append(Failure(item.product_id, image, reason, message))
        self.failed_products.add(item.product_id)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    first_delay: float = 0.5
    max_delay: float = 8.0
    timeout: float = 120.0  # per RPC: a batch is embedded on the server before it answers


class Circuit:
    """Shared by the workers: once a batch has failed with the gateway unreachable
    after every retry, later batches are not sent (each would only wait out its own
    retries) but reported failed with that reason."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reason: str | None = None

    def trip(self, reason: str) -> None:
        with self._lock:
            self.reason = self.reason or reason


def image_uri(path: Path) -> str:
    return str(path.resolve())


# --- building requests -----------------------------------------------------


def product_pb(item: CatalogItem) -> search_pb2.ProductInput:
    """Metadata only; images are attached by `read_images`."""
    return search_pb2.ProductInput(
        product=common_pb2.Product(
            product_id=item.product_id,
            title=item.title,
            category=item.category,
            brand=item.brand,
            price=item.price,
            attributes=item.attributes,
        )
    )


def read_images(item: CatalogItem, outcome: BatchOutcome) -> search_pb2.ProductInput | None:
    """The product with its image bytes, or None (and a failure) when a file cannot be read.

    A product is written whole or not at all, so one unreadable file keeps
    the whole product out rather than indexing it with a missing image.
    """
    msg = product_pb(item)
    for path in item.images:
        try:
            content = path.read_bytes()
        except OSError as err:
            outcome.fail(item, display_path(path), "UNREADABLE", err.strerror or str(err))
            return None
        msg.images.append(search_pb2.ProductImage(content=content, uri=image_uri(path)))
    return msg


# --- calling the gateway ---------------------------------------------------


def call_with_retry(
    call: Callable[[], search_pb2.UpsertProductsResponse],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> search_pb2.UpsertProductsResponse:
    """`call()`, retried with exponential back-off while the error is transient."""
    delay = policy.first_delay
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except grpc.RpcError as err:
            if err.code() not in RETRYABLE_CODES or attempt == policy.attempts:
                raise
            sleep(delay)
            delay = min(delay * 2, policy.max_delay)
    raise AssertionError("unreachable")


def upsert(
    stub: search_pb2_grpc.SearchServiceStub,
    items: Sequence[CatalogItem],
    products: Sequence[search_pb2.ProductInput],
    policy: RetryPolicy,
    outcome: BatchOutcome,
    circuit: Circuit,
    catalog: str = "",
) -> None:
    """Send one batch; on RESOURCE_EXHAUSTED split it, since the batch (not a product) may be too big."""
    request = search_pb2.UpsertProductsRequest(products=list(products), catalog=catalog)
    try:
        response = call_with_retry(lambda: stub.UpsertProducts(request, timeout=policy.timeout), policy)
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and len(products) > 1:
            half = len(products) // 2
            upsert(stub, items[:half], products[:half], policy, outcome, circuit, catalog)
            upsert(stub, items[half:], products[half:], policy, outcome, circuit, catalog)
            return
        if err.code() in RETRYABLE_CODES:
            circuit.trip(f"{err.code().name} after {policy.attempts} attempts: {err.details() or ''}")
        elif err.code() in _ENDPOINT_CODES:
            circuit.trip(f"{err.code().name}: {err.details() or ''}")
        for item in items:
            outcome.fail(item, _images_label(item), f"RPC {err.code().name}", err.details() or "")
        return
    record_results(items, response.results, outcome)


def record_results(
    items: Sequence[CatalogItem],
    results: Sequence[search_pb2.ProductResult],
    outcome: BatchOutcome,
) -> None:
    """Match the per-product results (in request order) back to the catalog items."""
    for i, item in enumerate(items):
        result = results[i] if i < len(results) else None
        if result is None or result.product_id != item.product_id:
            outcome.fail(item, _images_label(item), "NO_RESULT", "the gateway returned no result for this product")
        elif result.ok:
            outcome.indexed.append(item.product_id)
        elif result.image_failures:
            for f in result.image_failures:
                image = display_path(item.images[f.index]) if 0 <= f.index < len(item.images) else f"#{f.index}"
                outcome.fail(item, image, _reason_name(f.error.reason), f.error.message or result.error)
        else:
            outcome.fail(item, _images_label(item), "REJECTED", result.error)


def _reason_name(reason: int) -> str:
    try:
        name = common_pb2.ImageErrorReason.Name(reason)
    except ValueError:
        return str(reason)
    return name.removeprefix(_REASON_PREFIX)


def _images_label(item: CatalogItem) -> str:
    if len(item.images) == 1:
        return display_path(item.images[0])
    return f"{display_path(item.images[0])} (+{len(item.images) - 1})"


def already_indexed(
    stub: search_pb2_grpc.SearchServiceStub, items: Sequence[CatalogItem], timeout: float, catalog: str = ""
) -> list[bool]:
    """For each item: does the gateway have it with the same metadata and image paths?

    Only a shortcut for re-runs: any doubt (including an error) means "index
    it", since upsert is idempotent anyway. The look-ups go out together, as
    each is a store query of its own.
    """
    calls = [
        stub.GetProduct.future(search_pb2.GetProductRequest(product_id=i.product_id, catalog=catalog), timeout=timeout)
        for i in items
    ]
    return [_unchanged(item, call) for item, call in zip(items, calls)]


def _unchanged(item: CatalogItem, call: grpc.Future) -> bool:
    try:
        stored = call.result()
    except grpc.RpcError:
        return False
    wanted = product_pb(item).product
    return (
        stored.title == wanted.title
        and stored.category == wanted.category
        and stored.brand == wanted.brand
        and abs(stored.price - wanted.price) < 1e-9
        and dict(stored.attributes) == dict(wanted.attributes)
        and sorted(stored.image_uris) == sorted(image_uri(p) for p in item.images)
    )


def index_batch(
    stub: search_pb2_grpc.SearchServiceStub,
    batch: Sequence[CatalogItem],
    policy: RetryPolicy,
    skip_existing: bool,
    circuit: Circuit,
    catalog: str = "",
) -> BatchOutcome:
    outcome = BatchOutcome(images=sum(len(i.images) for i in batch))
    if circuit.reason is not None:
        for item in batch:
            outcome.fail(item, _images_label(item), "NOT_SENT", f"an earlier batch failed with {circuit.reason}")
        return outcome
    items: list[CatalogItem] = []
    products: list[search_pb2.ProductInput] = []
    present = already_indexed(stub, batch, 10.0, catalog) if skip_existing else [False] * len(batch)
    for item, skip in zip(batch, present):
        if skip:
            outcome.skipped.append(item.product_id)
            continue
        msg = read_images(item, outcome)
        if msg is not None:
            items.append(item)
            products.append(msg)
    if products:
        upsert(stub, items, products, policy, outcome, circuit, catalog)
    return outcome


def batches(items: Sequence[CatalogItem], size: int) -> Iterable[Sequence[CatalogItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def index_catalog(
    gateway: str,
    items: Sequence[CatalogItem],
    batch_size: int = 16,
    concurrency: int = 2,
    policy: RetryPolicy = RetryPolicy(),
    skip_existing: bool = False,
    progress: bool = True,
    catalog: str = "",
) -> BatchOutcome:
    """Index `items` through the gateway at `gateway`; also used by `imagesearch up --demo`.

    Batches are submitted lazily (at most 2 x concurrency in flight) so a big
    catalog's images are never all in memory at once.
    """
    total = BatchOutcome()
    stop = threading.Event()
    circuit = Circuit()
    with (
        open_channel(gateway) as channel,
        ThreadPoolExecutor(max_workers=concurrency) as pool,
        tqdm(
            total=sum(len(i.images) for i in items),
            unit="img",
            desc="indexing",
            disable=not progress,
            dynamic_ncols=True,
            file=sys.stderr,
        ) as bar,
    ):
        stub = search_stub(channel)
        pending: set[Future[BatchOutcome]] = set()
        queue = iter(batches(items, batch_size))
        try:
            for batch in queue:
                pending.add(
                    pool.submit(_guarded, stop, index_batch, stub, batch, policy, skip_existing, circuit, catalog)
                )
                if len(pending) >= 2 * concurrency:
                    pending = _collect(pending, total, bar)
            while pending:
                pending = _collect(pending, total, bar)
        except KeyboardInterrupt:
            stop.set()  # queued batches return at once; the ones in flight finish
            for future in pending:
                future.cancel()
            raise
    order = {item.product_id: i for i, item in enumerate(items)}
    total.failures.sort(key=lambda f: order.get(f.product_id, len(order)))  # catalog order, not completion order
    return total


def _guarded(stop: threading.Event, fn: Callable[..., BatchOutcome], *args: object) -> BatchOutcome:
    return BatchOutcome() if stop.is_set() else fn(*args)


def _collect(pending: set[Future[BatchOutcome]], total: BatchOutcome, bar: tqdm) -> set[Future[BatchOutcome]]:
    done, rest = wait(pending, return_when=FIRST_COMPLETED)
    for future in done:
        outcome = future.result()
        total.merge(outcome)
        bar.update(outcome.images)
        bar.set_postfix(failed=len(total.failed_products), refresh=False)
    return rest


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


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "index",
        parents=[gateway_option()],
        help="add or update products from a CSV or an image folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Send products to the gateway (UpsertProducts) in batches.\n\n"
            "SOURCE is either a CSV with columns product_id,title,category,brand,price,image,attributes\n"
            "(only product_id and image are required; image is relative to the CSV's folder;\n"
            'attributes is a JSON object such as {"color": "red"}; repeat a product_id on several\n'
            "rows to give it several images), or a folder of .jpg/.png/.webp images: product id and\n"
            'title are the file name without extension, category the sub-folder ("" at the top).\n\n'
            "Images are sent with their absolute path as uri, which is what search results show.\n"
            "Re-running is safe: upsert replaces products by id. Failed products are listed at the\n"
            "end with the reason, and the exit status is 1 when anything failed."
        ),
        epilog=(
            "examples:\n"
            "  imagesearch index demo/catalog.csv\n"
            "  imagesearch index ~/photos/shoes --batch 32 --concurrency 4\n"
            "  imagesearch index demo/catalog.csv --skip-existing   # only new or changed products"
        ),
    )
    p.add_argument("source", type=Path, help="catalog CSV file or folder of images")
    p.add_argument("--batch", type=_positive_int, default=16, metavar="N", help="products per request (default 16)")
    p.add_argument("--concurrency", type=_positive_int, default=2, metavar="N", help="requests in flight (default 2)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds per request (default 120)")
    p.add_argument(
        "--retries",
        type=_positive_int,
        default=5,
        metavar="N",
        help="attempts per batch while the gateway is UNAVAILABLE or times out (default 5)",
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

    d = subparsers.add_parser(
        "delete",
        parents=[gateway_option()],
        help="remove products by id",
        description="Remove products and all their images from the catalog (DeleteProducts).",
        epilog="example:\n  imagesearch delete p00496c64 p006990d5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("product_ids", nargs="+", metavar="PRODUCT_ID")
    d.add_argument("--catalog", default="", metavar="NAME", help="named catalog (default: the default catalog)")
    d.set_defaults(func=run_delete)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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
    with open_channel(args.gateway) as channel:
        response = search_stub(channel).DeleteProducts(
            search_pb2.DeleteProductsRequest(product_ids=args.product_ids, catalog=args.catalog), timeout=30.0
        )
    for pid in response.deleted:
        print(f"deleted    {pid}")
    for pid in response.not_found:
        print(f"not found  {pid} (nothing to delete)")
    return 0
