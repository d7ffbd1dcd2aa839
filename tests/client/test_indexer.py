"""The indexer: retries with back-off, splitting, the circuit breaker, and nothing dropped silently."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from support import solid_jpeg, write

from imagesearch.client.catalog import load_csv
from imagesearch.client.indexer import (
    BatchOutcome,
    Circuit,
    RetryPolicy,
    call_with_retry,
    index_batch,
    read_images,
    record_results,
)
from imagesearch.v1 import common_pb2, search_pb2

# --- index: results, retries, failures ---------------------------------------------


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "boom") -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_call_with_retry_retries_transient_errors_with_growing_delays() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky() -> search_pb2.UpsertProductsResponse:
        calls.append(1)
        if len(calls) < 3:
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE)
        return search_pb2.UpsertProductsResponse()

    call_with_retry(flaky, RetryPolicy(attempts=5, first_delay=0.5), sleep=sleeps.append, jitter=lambda: 1.0)
    assert len(calls) == 3 and sleeps == [0.5, 1.0]


def test_call_with_retry_gives_up_and_never_retries_request_errors() -> None:
    sleeps: list[float] = []

    def down() -> search_pb2.UpsertProductsResponse:
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE)

    with pytest.raises(grpc.RpcError):
        call_with_retry(down, RetryPolicy(attempts=3, first_delay=1), sleep=sleeps.append, jitter=lambda: 1.0)
    assert sleeps == [1, 2]

    def bad() -> search_pb2.UpsertProductsResponse:
        raise FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT)

    sleeps.clear()
    with pytest.raises(grpc.RpcError):
        call_with_retry(bad, RetryPolicy(attempts=3), sleep=sleeps.append, jitter=lambda: 1.0)
    assert sleeps == []


def test_a_busy_gateway_is_retried_with_jittered_back_off_but_a_message_too_large_is_not() -> None:
    sleeps: list[float] = []
    replies = iter([FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "gateway: concurrent calls is exhausted")] * 2)

    def busy() -> search_pb2.UpsertProductsResponse:
        error = next(replies, None)
        if error is not None:
            raise error
        return search_pb2.UpsertProductsResponse()

    call_with_retry(busy, RetryPolicy(attempts=5, first_delay=1.0), sleep=sleeps.append, jitter=lambda: 0.75)
    assert sleeps == [0.75, 1.5]

    def too_large() -> search_pb2.UpsertProductsResponse:
        raise FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max (9 vs. 8)")

    sleeps.clear()
    with pytest.raises(grpc.RpcError):
        call_with_retry(too_large, RetryPolicy(attempts=3), sleep=sleeps.append)
    assert sleeps == []  # the caller splits the batch instead


def test_record_results_reports_every_rejected_image(tmp_path: Path) -> None:
    items = load_csv(write(tmp_path / "c.csv", "product_id,image\np1,a.jpg\np2,b.jpg\np2,c.jpg\np3,d.jpg\n"))
    results = [
        search_pb2.ProductResult(product_id="p1", ok=True, images_indexed=1),
        search_pb2.ProductResult(
            product_id="p2",
            ok=False,
            error="1 of 2 images rejected",
            image_failures=[
                search_pb2.ImageFailure(
                    index=1,
                    error=common_pb2.ImageError(reason=common_pb2.IMAGE_ERROR_REASON_CORRUPT, message="truncated JPEG"),
                )
            ],
        ),
        search_pb2.ProductResult(product_id="p3", ok=False, error="category too long"),
    ]
    outcome = BatchOutcome()
    record_results(items, results, outcome)
    assert outcome.indexed == ["p1"] and outcome.failed_products == {"p2", "p3"}
    by_id = {f.product_id: f for f in outcome.failures}
    assert by_id["p2"].image.endswith("c.jpg") and by_id["p2"].reason == "CORRUPT"
    assert by_id["p2"].message == "truncated JPEG"
    assert (by_id["p3"].reason, by_id["p3"].message) == ("REJECTED", "category too long")


def test_a_missing_result_is_a_failure_not_a_silent_drop(tmp_path: Path) -> None:
    items = load_csv(write(tmp_path / "c.csv", "product_id,image\np1,a.jpg\np2,b.jpg\n"))
    outcome = BatchOutcome()
    record_results(items, [search_pb2.ProductResult(product_id="p1", ok=True)], outcome)
    assert outcome.indexed == ["p1"] and [f.reason for f in outcome.failures] == ["NO_RESULT"]


def test_unreadable_file_keeps_the_product_out(tmp_path: Path) -> None:
    solid_jpeg(tmp_path / "a.jpg", (9, 9, 9))
    [item] = load_csv(write(tmp_path / "c.csv", "product_id,image\np1,a.jpg\np1,gone.jpg\n"))
    outcome = BatchOutcome()
    assert read_images(item, outcome) is None
    [failure] = outcome.failures
    assert failure.reason == "UNREADABLE" and failure.image.endswith("gone.jpg")
    assert "No such file" in failure.message


class FakeStub:
    """UpsertProducts that accepts at most `limit` products per request, else RESOURCE_EXHAUSTED."""

    def __init__(self, limit: int = 100, code: grpc.StatusCode | None = None) -> None:
        self.limit, self.code, self.sizes = limit, code, []

    def UpsertProducts(
        self, request: search_pb2.UpsertProductsRequest, timeout: float
    ) -> search_pb2.UpsertProductsResponse:
        self.sizes.append(len(request.products))
        if self.code is not None:
            raise FakeRpcError(self.code, "gateway is down")
        if len(request.products) > self.limit:
            raise FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max (2 vs. 1)")
        return search_pb2.UpsertProductsResponse(
            results=[
                search_pb2.ProductResult(product_id=p.product.product_id, ok=True, images_indexed=len(p.images))
                for p in request.products
            ]
        )


def catalog_of(tmp_path: Path, n: int) -> list:  # type: ignore[type-arg]
    rows = []
    for i in range(n):
        solid_jpeg(tmp_path / f"p{i}.jpg", (i, i, i))
        rows.append(f"p{i},p{i}.jpg")
    return load_csv(write(tmp_path / "c.csv", "product_id,image\n" + "\n".join(rows) + "\n"))


def test_too_large_batches_are_split_until_they_fit(tmp_path: Path) -> None:
    stub = FakeStub(limit=2)
    outcome = index_batch(stub, catalog_of(tmp_path, 5), RetryPolicy(attempts=1), False, Circuit())  # type: ignore[arg-type]
    assert sorted(outcome.indexed) == [f"p{i}" for i in range(5)] and not outcome.failures
    assert stub.sizes == [5, 2, 3, 1, 2]  # halves, and halves again, until the gateway accepts


def test_an_unreachable_gateway_trips_the_circuit_and_nothing_is_dropped(tmp_path: Path) -> None:
    items = catalog_of(tmp_path, 4)
    stub, circuit = FakeStub(code=grpc.StatusCode.UNAVAILABLE), Circuit()
    policy = RetryPolicy(attempts=2, first_delay=0.0)
    first = index_batch(stub, items[:2], policy, False, circuit)  # type: ignore[arg-type]
    second = index_batch(stub, items[2:], policy, False, circuit)  # type: ignore[arg-type]
    assert stub.sizes == [2, 2]  # the first batch tried twice; the second was never sent
    assert [f.reason for f in first.failures] == ["RPC UNAVAILABLE"] * 2
    assert [f.reason for f in second.failures] == ["NOT_SENT"] * 2
    assert "UNAVAILABLE after 2 attempts" in second.failures[0].message


def test_an_unimplemented_endpoint_trips_the_circuit_at_once(tmp_path: Path) -> None:
    items = catalog_of(tmp_path, 4)
    stub, circuit = FakeStub(code=grpc.StatusCode.UNIMPLEMENTED), Circuit()
    index_batch(stub, items[:2], RetryPolicy(attempts=3), False, circuit)  # type: ignore[arg-type]
    second = index_batch(stub, items[2:], RetryPolicy(attempts=3), False, circuit)  # type: ignore[arg-type]
    assert stub.sizes == [2]  # not retried, and nothing more sent
    assert [f.reason for f in second.failures] == ["NOT_SENT"] * 2
