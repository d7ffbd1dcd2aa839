"""The `imagesearch` command line: arguments, exit statuses, output; a fake SearchService on a loopback
port stands in for the gateway, so the real gRPC client code and the real exit statuses are tested."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from PIL import Image
from support import CSV_HEADER, solid_jpeg, write

from imagesearch.cli import main as cli_main
from imagesearch.cli.common import format_table, truncate
from imagesearch.cli.search import build_request, parse_region, results_table, summary
from imagesearch.client.channel import normalise_target
from imagesearch.client.indexer import (
    image_uri,
)
from imagesearch.client.sheet import SheetLayout
from imagesearch.v1 import common_pb2, search_pb2, search_pb2_grpc

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
    csv_path = write(tmp_path / "c.csv", CSV_HEADER + "p1,t,c,b,1,a.jpg,{oops}\n")
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
