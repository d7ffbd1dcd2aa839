"""Unit tests of the `imagesearch` command line: no Triton, Milvus or Redis.

Where a gateway is needed, a fake SearchService on a loopback port stands in,
so what is tested is the real gRPC client code and the real exit statuses.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from imagesearch.cli import main as cli_main
from imagesearch.cli.common import format_table, truncate
from imagesearch.cli.search import build_request, parse_region, results_table, summary
from imagesearch.client.catalog import CatalogError, load_catalog, load_csv, load_folder
from imagesearch.client.channel import normalise_target
from imagesearch.client.indexer import (
    BatchOutcome,
    Circuit,
    RetryPolicy,
    call_with_retry,
    image_uri,
    index_batch,
    read_images,
    record_results,
)
from imagesearch.client.sheet import SheetLayout, build_sheet, local_image_path, render_contact_sheet
from imagesearch.common import probe
from imagesearch.v1 import common_pb2, search_pb2, search_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
DEV_SET = Path(os.environ.get("IMAGESEARCH_DEV_SET", REPO.parent / "shared" / "datasets" / "dev"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def solid_jpeg(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")
    return path


# --- CSV catalogs -------------------------------------------------------------

HEADER = "product_id,title,category,brand,price,image,attributes\n"


def test_csv_quoting_multiline_and_json_attributes(tmp_path: Path) -> None:
    csv_path = write(
        tmp_path / "cat" / "catalog.csv",
        HEADER
        + (
            'p1,"Bishop, white ""Staunton"" style",symbols/chess,Acme,19.5,img/p1.jpg,"{""color"": ""white"", ""size"": 3, ""new"": true}"\n'
            'p2,"two\nlines",,,,/abs/p2.png,\n'
        ),
    )
    p1, p2 = load_csv(csv_path)
    assert p1.title == 'Bishop, white "Staunton" style'
    assert p1.category == "symbols/chess" and p1.brand == "Acme" and p1.price == 19.5
    # map<string, string> on the wire: scalars become their JSON spelling.
    assert p1.attributes == {"color": "white", "size": "3", "new": "true"}
    # Relative image paths are relative to the CSV's folder, not the working directory.
    assert p1.images == ((tmp_path / "cat").resolve() / "img" / "p1.jpg",)
    assert p2.title == "two\nlines" and p2.price == 0.0 and p2.attributes == {} and p2.images == (Path("/abs/p2.png"),)


def test_csv_with_only_the_dataset_columns_gets_defaults(tmp_path: Path) -> None:
    csv_path = write(
        tmp_path / "catalog.csv", "product_id,title,category,image\np9,An almond.,food/nuts,catalog/p9.jpg\n"
    )
    [item] = load_csv(csv_path)
    assert (item.product_id, item.title, item.category, item.brand, item.price, item.attributes) == (
        "p9",
        "An almond.",
        "food/nuts",
        "",
        0.0,
        {},
    )


def test_csv_byte_order_mark_and_blank_lines_are_tolerated(tmp_path: Path) -> None:
    csv_path = tmp_path / "catalog.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfproduct_id,image\r\np1,a.jpg\r\n,\r\n\r\np2,b.jpg\r\n")
    assert [i.product_id for i in load_csv(csv_path)] == ["p1", "p2"]


def test_csv_repeated_product_id_collects_its_images(tmp_path: Path) -> None:
    csv_path = write(
        tmp_path / "catalog.csv", "product_id,title,image\np1,Shoe,front.jpg\np2,Bag,bag.jpg\np1,,side.jpg\n"
    )
    p1, p2 = load_csv(csv_path)
    assert p1.title == "Shoe" and [p.name for p in p1.images] == ["front.jpg", "side.jpg"]
    assert p2.product_id == "p2"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ('p1,t,c,b,1,a.jpg,"{""color"": red}"', r"catalog\.csv:3: attributes is not valid JSON"),
        ('p1,t,c,b,1,a.jpg,"[1, 2]"', r"catalog\.csv:3: attributes must be a JSON object"),
        ('p1,t,c,b,1,a.jpg,"{""dims"": {""w"": 1}}"', r"catalog\.csv:3: attribute 'dims' must be a string"),
        ("p1,t,c,b,cheap,a.jpg,{}", r"catalog\.csv:3: price must be a number, got 'cheap'"),
        ("p1,t,c,b,-1,a.jpg,{}", r"catalog\.csv:3: price must be a finite number >= 0"),
        (",t,c,b,1,a.jpg,{}", r"catalog\.csv:3: empty product_id"),
        ("p1,t,c,b,1,,{}", r"catalog\.csv:3: product p1 has an empty image column"),
        ("p1,t,c,b,1,a.jpg,{},extra", r"catalog\.csv:3: more fields than the header"),
    ],
)
def test_csv_errors_name_the_line(tmp_path: Path, row: str, expected: str) -> None:
    csv_path = write(tmp_path / "catalog.csv", HEADER + "p0,ok,c,b,1,ok.jpg,{}\n" + row + "\n")
    with pytest.raises(CatalogError, match=expected):
        load_csv(csv_path)


def test_csv_error_line_counts_physical_lines(tmp_path: Path) -> None:
    # A quoted title spanning two lines pushes the next record to line 4.
    csv_path = write(tmp_path / "catalog.csv", HEADER + 'p0,"two\nlines",c,b,1,a.jpg,{}\np1,t,c,b,1,a.jpg,not-json\n')
    with pytest.raises(CatalogError, match=r"catalog\.csv:4: "):
        load_csv(csv_path)


def test_csv_missing_required_column_is_explained(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "catalog.csv", "id,title,image\np1,t,a.jpg\n")
    with pytest.raises(CatalogError, match=r"catalog\.csv:1: missing column\(s\) product_id; header is id,title,image"):
        load_csv(csv_path)


def test_empty_and_non_utf8_files_are_explained(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="empty file"):
        load_csv(write(tmp_path / "empty.csv", ""))
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("product_id,title,image\np1,Caf\xe9,a.jpg\n".encode("latin-1"))
    with pytest.raises(CatalogError, match="not UTF-8"):
        load_csv(latin1)


def test_missing_source_is_explained(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no such file or folder"):
        load_catalog(tmp_path / "nope.csv")


def test_demo_and_dev_catalogs_load() -> None:
    demo = load_catalog(REPO / "demo" / "catalog.csv")
    assert len(demo) == 300 and all(i.images[0].is_file() for i in demo)
    assert any(i.brand for i in demo) and any(i.price for i in demo)
    if not (DEV_SET / "catalog.csv").exists():
        pytest.skip(f"dev dataset not found at {DEV_SET}")
    dev = load_catalog(DEV_SET / "catalog.csv")
    assert len(dev) == 340 and all(i.brand == "" and i.price == 0.0 for i in dev)
    assert all(i.images[0].is_file() for i in dev)


# --- folder catalogs ------------------------------------------------------------


def test_folder_ids_titles_and_categories(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    solid_jpeg(root / "top.jpg", (255, 0, 0))
    solid_jpeg(root / "shoes" / "boot-1.JPG", (0, 255, 0))
    solid_jpeg(root / "bags" / "leather" / "tote.png", (0, 0, 255))
    write(root / "shoes" / "notes.txt", "not an image")
    solid_jpeg(root / ".thumbs" / "hidden.jpg", (0, 0, 0))
    items = {i.product_id: i for i in load_folder(root)}
    assert set(items) == {"top", "boot-1", "tote"}
    assert items["top"].category == "" and items["boot-1"].category == "shoes"
    assert items["tote"].category == "bags/leather" and items["tote"].title == "tote"
    assert items["tote"].images == ((root / "bags" / "leather" / "tote.png").resolve(),)


def test_folder_duplicate_stems_and_empty_folders_are_errors(tmp_path: Path) -> None:
    solid_jpeg(tmp_path / "a" / "same.jpg", (1, 1, 1))
    solid_jpeg(tmp_path / "b" / "same.jpg", (2, 2, 2))
    with pytest.raises(CatalogError, match=r"two images would get product id 'same': a/same\.jpg and b/same\.jpg"):
        load_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogError, match="no images found"):
        load_folder(tmp_path / "empty")


# --- argument parsing ------------------------------------------------------------


def parse(*argv: str):  # type: ignore[no-untyped-def]
    args = cli_main.build_parser().parse_args(argv)
    if hasattr(args, "check"):
        args.check(args)
    return args


def test_search_filters_and_region_build_the_request(tmp_path: Path) -> None:
    args = parse(
        "search",
        "q.jpg",
        "--top-k",
        "5",
        "--category",
        "shoes",
        "--category",
        "bags",
        "--brand",
        "Acme",
        "--price-min",
        "10",
        "--price-max",
        "99.5",
        "--attr",
        "color=red",
        "--attr",
        "color=blue",
        "--attr",
        "size = 42",
        "--min-score",
        "0.3",
        "--region",
        "0.1, 0.2,0.6,0.9",
        "--no-cache",
    )
    req = build_request(args, b"jpeg-bytes")
    assert req.WhichOneof("query") == "image" and req.image == b"jpeg-bytes"
    assert req.top_k == 5 and req.skip_cache and req.min_score == pytest.approx(0.3)
    assert list(req.filter.categories) == ["shoes", "bags"] and list(req.filter.brands) == ["Acme"]
    assert req.filter.price.min == 10 and req.filter.price.max == 99.5
    # Repeating a key ORs its values: one clause per key.
    assert [(a.key, list(a.values)) for a in req.filter.attributes] == [("color", ["red", "blue"]), ("size", ["42"])]
    assert (req.region.x_min, req.region.x_max) == (pytest.approx(0.1), pytest.approx(0.6))
    assert (req.region.y_min, req.region.y_max) == (pytest.approx(0.2), pytest.approx(0.9))


def test_search_without_filters_sends_an_empty_filter_and_open_price() -> None:
    req = build_request(parse("search", "--like", "p1"), None)
    assert req.WhichOneof("query") == "product_id" and req.product_id == "p1"
    assert req.top_k == 10 and not req.HasField("region")
    assert not req.filter.HasField("price") and req.filter.ByteSize() == 0


def test_only_one_price_bound_stays_open_on_the_other_side() -> None:
    req = build_request(parse("search", "q.jpg", "--price-max", "20"), b"x")
    assert req.filter.price.HasField("max") and not req.filter.price.HasField("min")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "q.jpg", "--region", "0.1,0.2,0.3"], "region must be x0,y0,x1,y1"),
        (["search", "q.jpg", "--region", "0,0,1.5,1"], "must lie in [0, 1]"),
        (["search", "q.jpg", "--region", "0.5,0,0.2,1"], "x_min < x_max and y_min < y_max"),
        (["search", "q.jpg", "--region", "a,b,c,d"], "must be numbers"),
        (["search", "q.jpg", "--attr", "color"], "must be key=value"),
        (["search", "q.jpg", "--top-k", "0"], "between 1 and 100"),
        (["search", "q.jpg", "--top-k", "101"], "between 1 and 100"),
        (["search", "q.jpg", "--price-min", "-3"], "price must be a number >= 0"),
        (["search", "q.jpg", "--price-min", "9", "--price-max", "3"], "is above --price-max"),
        (["search"], "give either a query image or --like"),
        (["search", "q.jpg", "--like", "p1"], "give either a query image or --like"),
        (["search", "--like", "p1", "--region", "0,0,1,1"], "--region applies to a query image"),
        (["index", "cat.csv", "--batch", "0"], "must be at least 1"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_parse_region_returns_floats() -> None:
    assert parse_region("0,0,1,1") == (0.0, 0.0, 1.0, 1.0)


def test_gateway_default_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGESEARCH_GATEWAY", raising=False)
    assert parse("search", "q.jpg").gateway == "127.0.0.1:50051"
    monkeypatch.setenv("IMAGESEARCH_GATEWAY", "search.internal:443")
    assert parse("search", "q.jpg").gateway == "search.internal:443"
    # Given before or after the command name, the option wins over the environment.
    assert parse("--gateway", "a:1", "search", "q.jpg").gateway == "a:1"
    assert parse("search", "q.jpg", "--gateway", "b:2").gateway == "b:2"


def test_top_level_help_teaches_commands_examples_and_environment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main.build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for needle in (
        "up",
        "search",
        "index",
        "delete",
        "examples:",
        "IMAGESEARCH_GATEWAY",
        "IMAGESEARCH_HOME",
        "REDIS_URL",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "LOG_LEVEL",
    ):
        assert needle in text


def test_small_helpers() -> None:
    assert normalise_target("grpc://host:1/") == "host:1" and normalise_target("host:1") == "host:1"
    assert truncate("abcdef", 4) == "abc…" and truncate("/a/b/c.jpg", 6, from_left=True) == "…c.jpg"
    table = format_table(["a", "title"], [["1", "x" * 50]], flexible=(1,), width=30)
    assert max(len(line) for line in table.splitlines()) <= 30 and "…" in table


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

    call_with_retry(flaky, RetryPolicy(attempts=5, first_delay=0.5), sleep=sleeps.append)
    assert len(calls) == 3 and sleeps == [0.5, 1.0]


def test_call_with_retry_gives_up_and_never_retries_request_errors() -> None:
    sleeps: list[float] = []

    def down() -> search_pb2.UpsertProductsResponse:
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE)

    with pytest.raises(grpc.RpcError):
        call_with_retry(down, RetryPolicy(attempts=3, first_delay=1), sleep=sleeps.append)
    assert sleeps == [1, 2]

    def bad() -> search_pb2.UpsertProductsResponse:
        raise FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT)

    sleeps.clear()
    with pytest.raises(grpc.RpcError):
        call_with_retry(bad, RetryPolicy(attempts=3), sleep=sleeps.append)
    assert sleeps == []


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
            raise FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "too big")
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


# --- the commands against a fake gateway -----------------------------------------------


class FakeGateway(search_pb2_grpc.SearchServiceServicer):
    """Indexes into a dict and answers searches from it; rejects images that are not JPEG."""

    def __init__(self) -> None:
        self.products: dict[str, common_pb2.Product] = {}
        self.upsert_calls = 0

    def UpsertProducts(self, request, context):  # type: ignore[no-untyped-def]
        self.upsert_calls += 1
        results = []
        for p in request.products:
            bad = [i for i, img in enumerate(p.images) if not img.content.startswith(b"\xff\xd8")]
            if bad:
                results.append(
                    search_pb2.ProductResult(
                        product_id=p.product.product_id,
                        ok=False,
                        error="image rejected",
                        image_failures=[
                            search_pb2.ImageFailure(
                                index=i,
                                error=common_pb2.ImageError(
                                    reason=common_pb2.IMAGE_ERROR_REASON_UNSUPPORTED_FORMAT, message="not a JPEG"
                                ),
                            )
                            for i in bad
                        ],
                    )
                )
                continue
            stored = common_pb2.Product()
            stored.CopyFrom(p.product)
            stored.image_uris[:] = [img.uri for img in p.images]
            self.products[stored.product_id] = stored
            results.append(
                search_pb2.ProductResult(product_id=stored.product_id, ok=True, images_indexed=len(p.images))
            )
        return search_pb2.UpsertProductsResponse(results=results)

    def GetProduct(self, request, context):  # type: ignore[no-untyped-def]
        if request.product_id not in self.products:
            context.abort(grpc.StatusCode.NOT_FOUND, f"product {request.product_id} not found")
        return self.products[request.product_id]

    def DeleteProducts(self, request, context):  # type: ignore[no-untyped-def]
        deleted = [pid for pid in request.product_ids if self.products.pop(pid, None) is not None]
        return search_pb2.DeleteProductsResponse(
            deleted=deleted, not_found=[p for p in request.product_ids if p not in deleted]
        )

    def Search(self, request, context):  # type: ignore[no-untyped-def]
        if request.top_k > 100:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "top_k must be at most 100")
        if request.WhichOneof("query") == "image" and not request.image.startswith(b"\xff\xd8"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "image: unsupported format")
        hits = [
            common_pb2.SearchHit(
                product_id=p.product_id,
                score=1.0 - 0.1 * i,
                title=p.title,
                category=p.category,
                price=p.price,
                image_uri=p.image_uris[0] if p.image_uris else "",
            )
            for i, p in enumerate(list(self.products.values())[: request.top_k or 10])
        ]
        return search_pb2.SearchResponse(
            hits=hits, model=common_pb2.ModelInfo(name="fake-model", version="1", dimension=4), cache_hit=False
        )


@pytest.fixture
def fake_gateway() -> Iterator[tuple[str, FakeGateway]]:
    servicer = FakeGateway()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    search_pb2_grpc.add_SearchServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(0)


def test_index_search_delete_round_trip(
    tmp_path: Path, fake_gateway: tuple[str, FakeGateway], capsys: pytest.CaptureFixture[str]
) -> None:
    address, servicer = fake_gateway
    catalog = tmp_path / "shop"
    solid_jpeg(catalog / "shoes" / "boot.jpg", (200, 30, 30))
    solid_jpeg(catalog / "bags" / "tote.jpg", (30, 30, 200))
    Image.new("RGB", (8, 8)).save(catalog / "bags" / "clutch.png")  # the fake gateway rejects PNG

    code = cli_main.main(["--gateway", address, "index", str(catalog), "--batch", "2", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1  # one product failed
    assert "clutch" in out and "UNSUPPORTED_FORMAT" in out and "not a JPEG" in out
    assert "2 indexed, 1 failed" in out
    # Absolute paths as uri: that is what search results and contact sheets show.
    assert servicer.products["boot"].image_uris == [image_uri(catalog / "shoes" / "boot.jpg")]
    assert servicer.products["boot"].category == "shoes"

    # A re-run with --skip-existing sends nothing new for unchanged products.
    calls = servicer.upsert_calls
    (catalog / "bags" / "clutch.png").unlink()
    assert cli_main.main(["--gateway", address, "index", str(catalog), "--skip-existing", "--no-progress"]) == 0
    assert "0 indexed, 2 already indexed (skipped), 0 failed" in capsys.readouterr().out
    assert servicer.upsert_calls == calls

    sheet = tmp_path / "sheet.png"
    query = solid_jpeg(tmp_path / "q.jpg", (210, 40, 40))
    assert cli_main.main(["--gateway", address, "search", str(query), "-k", "5", "--sheet", str(sheet)]) == 0
    out = capsys.readouterr().out
    assert "boot" in out and "tote" in out and "model: fake-model 1 (dim 4)" in out and "cache: miss" in out
    assert "latency:" in out and "contact sheet:" in out
    assert Image.open(sheet).format == "PNG"

    # "More like this": the sheet's query panel shows the product's own indexed image.
    like_sheet = tmp_path / "like.png"
    assert cli_main.main(["--gateway", address, "search", "--like", "boot", "--sheet", str(like_sheet)]) == 0
    capsys.readouterr()
    layout = SheetLayout()
    centre = (layout.margin + layout.query_width // 2, 60 + layout.query_width // 2)  # 60: below the heading
    query_panel = Image.open(like_sheet).convert("RGB").getpixel(centre)
    assert query_panel[0] > 150 and query_panel[2] < 80  # the red boot, not a grey placeholder

    assert cli_main.main(["--gateway", address, "search", str(query), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["model"]["name"] == "fake-model" and len(body["hits"]) == 2 and "latency_ms" in body

    assert cli_main.main(["--gateway", address, "delete", "boot", "nope"]) == 0
    out = capsys.readouterr().out
    assert "deleted    boot" in out and "not found  nope" in out


def test_gateway_errors_are_one_line_without_traceback(
    tmp_path: Path, fake_gateway: tuple[str, FakeGateway], capsys: pytest.CaptureFixture[str]
) -> None:
    address, _ = fake_gateway
    not_an_image = write(tmp_path / "q.jpg", "plain text")
    assert cli_main.main(["--gateway", address, "search", str(not_an_image)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: INVALID_ARGUMENT: image: unsupported format"

    closed = f"127.0.0.1:{_closed_port()}"
    assert cli_main.main(["--gateway", closed, "search", str(not_an_image), "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: UNAVAILABLE: ") and "Traceback" not in err and err.count("\n") == 1
    assert cli_main.main(["search", str(tmp_path / "none.jpg")]) == 1
    assert capsys.readouterr().err.startswith("error: cannot read query image")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_index_of_a_bad_catalog_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = write(tmp_path / "c.csv", HEADER + "p1,t,c,b,1,a.jpg,{oops}\n")
    assert cli_main.main(["index", str(csv_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "c.csv:2: attributes is not valid JSON" in err and "\n" not in err


def test_results_table_and_summary() -> None:
    hits = [
        common_pb2.SearchHit(
            product_id="p1", score=0.98765, title="Red boot", category="shoes", price=12.5, image_uri="p1#0"
        )
    ]
    table = results_table(hits)
    assert "0.988" in table and "Red boot" in table and "12.50" in table and "p1#0" in table
    response = search_pb2.SearchResponse(model=common_pb2.ModelInfo(name="m", version="2", dimension=8), cache_hit=True)
    assert summary(response, 12.345) == "model: m 2 (dim 8)   cache: hit   latency: 12.3 ms"


# --- contact sheet -----------------------------------------------------------------


def dev_hits(n: int) -> list[common_pb2.SearchHit]:
    catalog = load_catalog(DEV_SET / "catalog.csv")[:n]
    return [
        common_pb2.SearchHit(
            product_id=item.product_id,
            score=0.95 - 0.07 * i,
            title=item.title,
            category=item.category,
            image_uri=str(item.images[0]),
        )
        for i, item in enumerate(catalog)
    ]


@pytest.fixture
def sheet_hits() -> list[common_pb2.SearchHit]:
    if not (DEV_SET / "catalog.csv").exists():
        pytest.skip(f"dev dataset not found at {DEV_SET}")
    hits = dev_hits(7)
    # Results whose image is not on this machine still get a tile.
    hits.append(
        common_pb2.SearchHit(
            product_id="remote1",
            score=0.41,
            title="Image behind a URL",
            image_uri="https://cdn.example.com/remote1.jpg",
        )
    )
    hits.append(common_pb2.SearchHit(product_id="gone1", score=0.40, title="Default uri", image_uri="gone1#0"))
    return hits


def test_contact_sheet_renders_query_region_and_tiles(tmp_path: Path, sheet_hits: list[common_pb2.SearchHit]) -> None:
    query = Path(sheet_hits[0].image_uri)
    layout = SheetLayout()
    out = render_contact_sheet(
        tmp_path / "sub" / "sheet.png",
        sheet_hits,
        query,
        region=(0.2, 0.1, 0.8, 0.7),
        query_label="q.jpg",
        subtitle="fake-model 1  ·  12 ms",
        layout=layout,
    )
    sheet = Image.open(out)
    assert sheet.format == "PNG"
    columns, rows = 5, 2
    caption = layout.caption_lines * (layout.font_size + 5) + 6
    expected_w = 3 * layout.margin + layout.query_width + columns * layout.tile + (columns - 1) * layout.gap
    assert sheet.size[0] == expected_w
    assert sheet.size[1] >= 2 * layout.margin + rows * (layout.tile + caption)
    rgb = sheet.convert("RGB")
    # Red region outline on the query panel.
    panel = np.asarray(rgb.crop((layout.margin, 0, layout.margin + layout.query_width, sheet.size[1]))).astype(int)
    reds = ((panel[..., 0] > 200) & (panel[..., 1] < 60) & (panel[..., 2] < 60)).sum()
    assert reds > 500
    # The last two tiles (URL and default uri) are grey placeholders.
    top = layout.margin + 2 * (layout.font_size + 5) + 8
    x = 2 * layout.margin + layout.query_width + 3 * (layout.tile + layout.gap)
    y = top + (layout.tile + caption + layout.gap)
    assert rgb.getpixel((x + 5, y + 5)) == (200, 200, 200)
    # A real image tile is not a placeholder.
    first = rgb.crop(
        (
            2 * layout.margin + layout.query_width,
            top,
            2 * layout.margin + layout.query_width + layout.tile,
            top + layout.tile,
        )
    )
    assert len(np.unique(np.asarray(first).reshape(-1, 3), axis=0)) > 50
    if os.environ.get("IMAGESEARCH_KEEP_SHEET"):  # to look at it: IMAGESEARCH_KEEP_SHEET=/tmp/sheet.png
        sheet.save(os.environ["IMAGESEARCH_KEEP_SHEET"])


def test_contact_sheet_without_hits_or_query_still_renders(tmp_path: Path) -> None:
    sheet = build_sheet([], None, None, "more like p1", "", SheetLayout())
    assert sheet.size[0] > 0 and sheet.getpixel((SheetLayout().margin + 5, 80)) == (200, 200, 200)
    out = render_contact_sheet(tmp_path / "empty.png", [], None)
    assert Image.open(out).format == "PNG"


def test_local_image_path_accepts_paths_and_file_urls_only(tmp_path: Path) -> None:
    img = solid_jpeg(tmp_path / "a b.jpg", (1, 2, 3))
    assert local_image_path(str(img)) == img
    assert local_image_path("file://" + str(img).replace(" ", "%20")) == img
    assert local_image_path("https://example.com/a.jpg") is None
    assert local_image_path("p1#0") is None and local_image_path("") is None


# --- LocalStack wiring, with stand-ins for Triton, Milvus and the services ----------------
# The real `up` against real servers is covered by the end-to-end tests; here the
# point is the wiring: environment, ports, health wait, failure report, stop order.

FAKE_SERVICE = """
import json, os, signal, sys, threading, time
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

name = os.path.basename(os.path.dirname(os.path.abspath(__file__))).removeprefix("imagesearch_")
if os.environ.get("FAKE_CRASH") == name:
    print("boom: cannot start", flush=True)
    sys.exit(3)
keys = ("OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT", "LOG_LEVEL", "TRITON_URL", "MILVUS_URI", "REDIS_URL",
        "EMBEDDER_ADDR", "RETRIEVER_ADDR", "EMBEDDER_PORT", "RETRIEVER_PORT", "GATEWAY_PORT")
print("ENV " + json.dumps({k: os.environ[k] for k in keys if k in os.environ}), flush=True)
port = os.environ[name.upper() + "_PORT"]
servicer = health.HealthServicer()
servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
server.add_insecure_port("127.0.0.1:" + port)
server.start()
threading.Timer(0.3, servicer.set, ("", health_pb2.HealthCheckResponse.SERVING)).start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
print("SIGTERM: draining", flush=True)
server.stop(1).wait()
"""


class StandIn:
    """Plays TritonServer / LocalMilvus: records the order of start and stop."""

    def __init__(self, label: str, events: list[str], **_: object) -> None:
        self.label, self.events, self.running = label, events, False
        self.grpc_url, self.uri, self.base_dir, self.log_path = f"{label}:1", f"http://{label}:2", Path("/x"), None

    def start(self) -> StandIn:
        self.events.append(f"start {self.label}")
        self.running = True
        return self

    def wait_ready(self, timeout: float) -> StandIn:
        return self

    def stop(self) -> None:
        self.events.append(f"stop {self.label}")
        self.running = False


@pytest.fixture
def stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from imagesearch.stack import local

    pkgs = tmp_path / "fakepkgs"
    for name in ("embedder", "retriever", "gateway"):
        write(pkgs / f"imagesearch_{name}" / "__init__.py", "")
        write(pkgs / f"imagesearch_{name}" / "__main__.py", FAKE_SERVICE)
    events: list[str] = []
    monkeypatch.setattr(local, "TritonServer", lambda **kw: StandIn("triton", events))
    monkeypatch.setattr(local, "LocalMilvus", lambda **kw: StandIn("milvus", events))
    repo = tmp_path / "repo"
    (repo / "model_repo").mkdir(parents=True)
    write(repo / "pyproject.toml", "")
    # Path entries come before the editable install's finder, so the stand-ins win.
    environ = {**os.environ, "PYTHONPATH": str(pkgs), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317"}

    def config(**overrides: object) -> local.StackConfig:
        base = {
            "repo_root": repo,
            "runtime_dir": tmp_path / "var",
            "gateway_port": 0,
            "log_level": "DEBUG",
            "ready_timeout": 30,
            "grace": 5,
            "environ": environ,
        }
        base.update(overrides)
        return local.StackConfig(**base)  # type: ignore[arg-type]

    return local, config, events


def service_env(log: Path) -> dict[str, str]:
    line = next(ln for ln in log.read_text().splitlines() if ln.startswith("ENV "))
    return json.loads(line[4:])


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not on PATH")
def test_local_stack_wires_starts_watches_and_stops_in_order(stand_ins) -> None:  # type: ignore[no-untyped-def]
    local, config, events = stand_ins
    messages: list[str] = []
    stack = local.LocalStack(config(), progress=messages.append)
    stack.start()
    try:
        for name in ("embedder", "retriever", "gateway"):
            assert probe.status(stack.services[name].address) == probe.SERVING
        logs = stack.config.log_dir
        embedder, retriever, gateway = (service_env(logs / f"{n}.log") for n in ("embedder", "retriever", "gateway"))
        assert embedder["OTEL_SERVICE_NAME"] == "imagesearch-embedder" and embedder["TRITON_URL"] == "triton:1"
        assert (
            retriever["OTEL_SERVICE_NAME"] == "imagesearch-retriever" and retriever["MILVUS_URI"] == "http://milvus:2"
        )
        assert gateway["EMBEDDER_ADDR"] == stack.services["embedder"].address
        assert gateway["RETRIEVER_ADDR"] == stack.services["retriever"].address
        assert gateway["REDIS_URL"] == stack.redis_url and stack.redis is not None
        assert all(
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317" and env["LOG_LEVEL"] == "DEBUG"
            for env in (embedder, retriever, gateway)
        )
        parts = [row[0] for row in stack.endpoints()]
        assert parts == ["gateway", "retriever", "embedder", "triton", "milvus", "redis", "logs"]
        assert stack.check() is None

        stack.services["retriever"].proc.kill()
        stack.services["retriever"].proc.wait()
        problem = stack.check()
        assert problem is not None and problem.startswith("retriever exited unexpectedly")
        assert "ENV {" in problem  # the log tail comes with it
    finally:
        stack.stop()
    # Services got SIGTERM (a graceful drain), then the dependencies stopped, in reverse order.
    assert "SIGTERM: draining" in (stack.config.log_dir / "gateway.log").read_text()
    assert "SIGTERM: draining" in (stack.config.log_dir / "embedder.log").read_text()
    assert events == ["start triton", "start milvus", "stop triton", "stop milvus"]
    stopping = [m for m in messages if m.endswith(": stopping")]
    assert stopping == [f"{n}: stopping" for n in ("gateway", "retriever", "embedder", "triton", "milvus", "redis")]
    assert stack.redis is None
    stack.stop()  # idempotent


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not on PATH")
def test_local_stack_start_failure_names_the_part_and_cleans_up(stand_ins) -> None:  # type: ignore[no-untyped-def]
    local, config, events = stand_ins
    cfg = config(redis_url="redis://127.0.0.1:1/0")  # unreachable: a private one is started instead
    cfg.environ["FAKE_CRASH"] = "retriever"  # type: ignore[index]
    stack = local.LocalStack(cfg)
    with pytest.raises(local.StackError) as err:
        stack.start()
    text = str(err.value)
    assert text.startswith("retriever exited with code 3 during start-up")
    assert "boom: cannot start" in text and "retriever.log" in text
    assert events[-2:] == ["stop triton", "stop milvus"]
    assert all(svc.proc is None for svc in stack.services.values())


def test_local_stack_refuses_a_busy_gateway_port(stand_ins) -> None:  # type: ignore[no-untyped-def]
    import socket

    local, config, events = stand_ins
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        stack = local.LocalStack(config(gateway_port=sock.getsockname()[1]))
        with pytest.raises(local.StackError, match="already in use"):
            stack.start()
    assert events == []  # nothing was started


def test_find_repo_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagesearch.stack.local import StackError, find_repo_root

    assert find_repo_root(environ={}) == REPO
    assert find_repo_root(REPO, environ={}) == REPO
    assert find_repo_root(environ={"IMAGESEARCH_HOME": str(REPO)}) == REPO
    with pytest.raises(StackError, match=r"IMAGESEARCH_HOME=.*no pyproject\.toml and model_repo"):
        find_repo_root(environ={"IMAGESEARCH_HOME": str(tmp_path)})
