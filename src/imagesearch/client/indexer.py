"""Indexing a catalog through the gateway: batches, retries with back-off, a circuit breaker.

Every image is sent with its absolute path as `uri`, so search hits name a file that
`imagesearch search --sheet` can open from any working directory (on the machine that indexed
it; elsewhere the sheet shows a placeholder).

Nothing is dropped silently: each product ends up indexed, skipped (already indexed, unchanged)
or in the failure report, and a batch whose RPC keeps failing is reported product by product
after a few retries with back-off. Upsert is idempotent by product_id, so re-running after a
failure is safe. `imagesearch index`, `up` (the demo catalog) and `eval` all index through here.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import grpc
from tqdm import tqdm

from imagesearch.client.catalog import CatalogItem, display_path
from imagesearch.client.channel import RETRYABLE_CODES, is_retryable, is_too_large, open_channel, search_stub
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


def _jitter() -> float:
    return random.uniform(0.5, 1.0)


def call_with_retry(
    call: Callable[[], search_pb2.UpsertProductsResponse],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = _jitter,
) -> search_pb2.UpsertProductsResponse:
    """`call()`, retried with exponential back-off while the error is transient (an outage, or a
    server at its admission limits). Each wait is scaled by `jitter()` (0.5-1x), so that workers
    refused together do not all come back together."""
    delay = policy.first_delay
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except grpc.RpcError as err:
            if not is_retryable(err) or attempt == policy.attempts:
                raise
            sleep(delay * jitter())
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
    """Send one batch. Too large for the gateway's message cap: split it (the batch, not a product, may
    be too big). The gateway busy (RESOURCE_EXHAUSTED otherwise): `call_with_retry` backs off."""
    request = search_pb2.UpsertProductsRequest(products=list(products), catalog=catalog)
    try:
        response = call_with_retry(lambda: stub.UpsertProducts(request, timeout=policy.timeout), policy)
    except grpc.RpcError as err:
        if is_too_large(err) and len(products) > 1:
            half = len(products) // 2
            upsert(stub, items[:half], products[:half], policy, outcome, circuit, catalog)
            upsert(stub, items[half:], products[half:], policy, outcome, circuit, catalog)
            return
        if err.code() in RETRYABLE_CODES:  # still away after every retry (busy is not a reason to stop)
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


def _unchanged(item: CatalogItem, call: grpc.Future[common_pb2.Product]) -> bool:
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
    api_key: str | None = None,
    ca_file: str | None = None,
) -> BatchOutcome:
    """Index `items` through the gateway at `gateway`; also used by `imagesearch up --demo`.

    Batches are submitted lazily (at most 2 x concurrency in flight) so a big
    catalog's images are never all in memory at once.
    """
    total = BatchOutcome()
    stop = threading.Event()
    circuit = Circuit()
    with (
        open_channel(gateway, api_key, ca_file) as channel,
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


def _collect(pending: set[Future[BatchOutcome]], total: BatchOutcome, bar: tqdm[NoReturn]) -> set[Future[BatchOutcome]]:
    done, rest = wait(pending, return_when=FIRST_COMPLETED)
    for future in done:
        outcome = future.result()
        total.merge(outcome)
        bar.update(outcome.images)
        bar.set_postfix(failed=len(total.failed_products), refresh=False)
    return rest
