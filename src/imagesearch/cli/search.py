"""`imagesearch search`: find the catalog products that look like a photo."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from imagesearch.cli.common import CliError, Subparsers, add_command, format_table
from imagesearch.client.catalog import display_path
from imagesearch.client.channel import open_channel, search_stub
from imagesearch.client.sheet import local_image_path, render_contact_sheet
from imagesearch.common.errors import InvalidArgument
from imagesearch.common.types import Region
from imagesearch.contracts.limits import MAX_TOP_K
from imagesearch.v1 import common_pb2, search_pb2

# --- argument types ----------------------------------------------------------


def parse_region(text: str) -> tuple[float, float, float, float]:
    """`x0,y0,x1,y1` as fractions of the image's width and height (0..1), checked as the services check it."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(
            f"region must be x0,y0,x1,y1 (four numbers between 0 and 1, e.g. 0.1,0.2,0.6,0.9), got {text!r}"
        )
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"region coordinates must be numbers, got {text!r}") from None
    try:
        Region(x0, y0, x1, y1).validate()
    except InvalidArgument as err:
        raise argparse.ArgumentTypeError(err.message) from None
    return x0, y0, x1, y1


def parse_attr(text: str) -> tuple[str, str]:
    """`key=value`; repeat the same key to allow several values."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"attribute filter must be key=value, got {text!r}")
    return key.strip(), value.strip()


def parse_top_k(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_TOP_K:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_TOP_K}, got {value}")
    return value


def parse_price(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a price, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"price must be a number >= 0, got {text!r}")
    return value


# --- request -----------------------------------------------------------------


def build_filter(
    categories: Sequence[str] = (),
    brands: Sequence[str] = (),
    price_min: float | None = None,
    price_max: float | None = None,
    attrs: Sequence[tuple[str, str]] = (),
) -> common_pb2.Filter:
    """Filter message: each clause ANDed; repeated values (and repeated attr keys) ORed."""
    flt = common_pb2.Filter(categories=list(categories), brands=list(brands))
    if price_min is not None:
        flt.price.min = price_min
    if price_max is not None:
        flt.price.max = price_max
    grouped: dict[str, list[str]] = {}
    for key, value in attrs:
        grouped.setdefault(key, []).append(value)
    for key, values in grouped.items():
        flt.attributes.append(common_pb2.AttributeFilter(key=key, values=values))
    return flt


def build_request(args: argparse.Namespace, image: bytes | None) -> search_pb2.SearchRequest:
    req = search_pb2.SearchRequest(
        top_k=args.top_k,
        filter=build_filter(args.category or (), args.brand or (), args.price_min, args.price_max, args.attr or ()),
        min_score=args.min_score or 0.0,
        skip_cache=args.no_cache,
        catalog=getattr(args, "catalog", "") or "",
        restrict_to_predicted_category=bool(getattr(args, "same_category", False)),
    )
    if image is not None:
        req.image = image
    else:
        req.product_id = args.like
    if args.region:
        x0, y0, x1, y1 = args.region
        req.region.CopyFrom(common_pb2.BoundingBox(x_min=x0, y_min=y0, x_max=x1, y_max=y1))
    req.object_index = getattr(args, "object", 0) or 0
    return req


def read_query_image(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise CliError(f"cannot read query image {path}: {err.strerror or err}") from None


# --- output ------------------------------------------------------------------


def results_table(hits: Sequence[common_pb2.SearchHit]) -> str:
    rows = [
        [str(rank), f"{h.score:.3f}", h.product_id, h.title, h.category, _price(h.price), _image(h.image_uri)]
        for rank, h in enumerate(hits, 1)
    ]
    return format_table(
        ["#", "score", "product_id", "title", "category", "price", "image"],
        rows,
        flexible=(3, 6, 4),
        right_aligned=(0, 1, 5),
        left_truncated=(6,),
    )


def _price(price: float) -> str:
    return f"{price:.2f}" if price else ""


def _image(uri: str) -> str:
    return display_path(uri) if local_image_path(uri) else uri


def summary(response: search_pb2.SearchResponse, latency_ms: float) -> str:
    m = response.model
    model = f"{m.name} {m.version} (dim {m.dimension})" if m.name else "unknown"
    cache = "hit" if response.cache_hit else "miss"
    line = f"model: {model}   cache: {cache}   latency: {latency_ms:.1f} ms"
    if response.HasField("predicted_category"):
        p = response.predicted_category
        line += f"\npredicted category: {p.category} ({p.confidence:.0%} of the vote)"
    if len(response.objects) > 1:  # one object is the photo itself: nothing to choose from
        searched = _box(response.searched_box)
        line += f"\nobjects in the photo ({len(response.objects)}; --object N searches another):"
        for found in response.objects:
            mark = "*" if _box(found.box) == searched else " "
            guess = (
                f"{found.category.category} ({found.category.confidence:.0%})" if found.HasField("category") else "?"
            )
            coords = ",".join(f"{v:.2f}" for v in _box(found.box))
            line += f"\n {mark} {found.index}  box {coords}  {guess}"
    return line


def _box(box: common_pb2.BoundingBox) -> tuple[float, float, float, float]:
    return (round(box.x_min, 3), round(box.y_min, 3), round(box.x_max, 3), round(box.y_max, 3))


def as_json(response: search_pb2.SearchResponse, latency_ms: float) -> str:
    body: dict[str, Any] = MessageToDict(
        response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    body["latency_ms"] = round(latency_ms, 2)
    return json.dumps(body, indent=2, ensure_ascii=False)


def write_sheet(args: argparse.Namespace, stub: Any, response: search_pb2.SearchResponse, latency_ms: float) -> Path:
    if args.like:
        query, label = _liked_image(stub, args.like), f"more like {args.like}"
    else:
        query, label = args.image, display_path(args.image)
    subtitle = f"{response.model.name} {response.model.version}".strip()
    subtitle += f"  ·  {latency_ms:.0f} ms{'  ·  cached' if response.cache_hit else ''}"
    searched = _box(response.searched_box) if response.HasField("searched_box") else args.region
    objects = [(found.index, _box(found.box)) for found in response.objects] if len(response.objects) > 1 else []
    return render_contact_sheet(args.sheet, list(response.hits), query, searched, label, subtitle, objects=objects)


def _liked_image(stub: Any, product_id: str) -> str | None:
    """The first image of the product a --like search starts from, when it is a local file."""
    import grpc  # local: only this optional path needs it

    try:
        product = stub.GetProduct(search_pb2.GetProductRequest(product_id=product_id), timeout=10.0)
    except grpc.RpcError:
        return None
    return next((u for u in product.image_uris if local_image_path(u)), None)


# --- command -----------------------------------------------------------------


SEARCH_HELP = "find the products that look like a photo (or like a product)"

SEARCH_DESCRIPTION = """\
Search the catalog with a photo (JPEG, PNG or WebP) or, with --like, with the images
of an indexed product. Prints the hits (rank, cosine score, product), the model that
embedded the query, whether the answer came from the gateway's cache, and the latency.

Filters: each option given must hold (AND); repeating an option allows any of its values
(OR): --category shoes --category bags --price-max 50 means (shoes OR bags) AND price <= 50.
"""

SEARCH_EPILOG = """\
examples:
  imagesearch search demo/queries/qfbf79e76.jpg
  imagesearch search photo.jpg --top-k 5 --category animals/birds --price-max 100
  imagesearch search photo.jpg --region 0.25,0.1,0.75,0.9 --sheet results.png
  imagesearch search shelf.jpg --sheet s.png      # lists the photo's objects; the sheet draws them
  imagesearch search shelf.jpg --object 1         # search the second object listed instead
  imagesearch search --like p00496c64 --attr color=red --attr color=blue
  imagesearch search photo.jpg --json | jq '.hits[0]'
"""


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "search", help=SEARCH_HELP, description=SEARCH_DESCRIPTION, epilog=SEARCH_EPILOG)
    p.add_argument("image", nargs="?", type=Path, help="query photo (omit when using --like)")
    p.add_argument("--like", metavar="PRODUCT_ID", help="search with an indexed product's images instead of a photo")
    p.add_argument(
        "--top-k",
        "-k",
        type=parse_top_k,
        default=10,
        metavar="N",
        help=f"number of products to return, 1..{MAX_TOP_K} (default 10)",
    )
    p.add_argument("--category", action="append", metavar="C", help="only this category (repeat for several)")
    p.add_argument("--brand", action="append", metavar="B", help="only this brand (repeat for several)")
    p.add_argument("--price-min", type=parse_price, metavar="P", help="lowest price, inclusive")
    p.add_argument("--price-max", type=parse_price, metavar="P", help="highest price, inclusive")
    p.add_argument(
        "--attr",
        action="append",
        type=parse_attr,
        metavar="KEY=VALUE",
        help="only products whose attribute KEY is VALUE (repeat; same KEY twice = either value)",
    )
    p.add_argument("--min-score", type=float, metavar="S", help="drop hits with a cosine score below S (0..1)")
    p.add_argument(
        "--region",
        type=parse_region,
        metavar="X0,Y0,X1,Y1",
        help="search only this box of the photo, as fractions of its width/height (0..1)",
    )
    p.add_argument(
        "--object",
        type=int,
        default=0,
        metavar="N",
        help="search the photo's object N as an answer lists them (0, the default: the main one)",
    )
    p.add_argument("--no-cache", action="store_true", help="bypass the gateway's result cache")
    p.add_argument(
        "--catalog", default="", metavar="NAME", help="search a named catalog (default: the default catalog)"
    )
    p.add_argument(
        "--same-category",
        action="store_true",
        help="only products of the query's predicted category (printed with the results)",
    )
    p.add_argument("--json", action="store_true", help="print the response as JSON instead of a table")
    p.add_argument("--sheet", type=Path, metavar="OUT.png", help="also write a contact sheet (query + result images)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds to wait (default 30)")
    p.set_defaults(func=run, check=lambda args: check_args(p.error, args))


def check_args(parser_error: Any, args: argparse.Namespace) -> None:
    """Cross-option rules argparse cannot express; `parser_error` exits with usage."""
    if (args.image is None) == (args.like is None):
        parser_error("give either a query image or --like PRODUCT_ID (exactly one)")
    if args.like and args.region:
        parser_error("--region applies to a query image, not to --like")
    if args.object and (args.like or args.region):
        parser_error("--object N names an object of a query photo searched without --region")
    if args.object < 0:
        parser_error(f"--object must be 0 or more, got {args.object}")
    if args.price_min is not None and args.price_max is not None and args.price_min > args.price_max:
        parser_error(f"--price-min {args.price_min} is above --price-max {args.price_max}")


def run(args: argparse.Namespace) -> int:
    image = read_query_image(args.image) if args.image is not None else None
    request = build_request(args, image)
    with open_channel(args.gateway, args.api_key, args.ca) as channel:
        stub = search_stub(channel)
        started = time.perf_counter()
        response = stub.Search(request, timeout=args.timeout)
        latency_ms = (time.perf_counter() - started) * 1000
        sheet = write_sheet(args, stub, response, latency_ms) if args.sheet else None
    if args.json:
        print(as_json(response, latency_ms))
    else:
        print(results_table(response.hits) if response.hits else "no matching products")
        print()
        print(summary(response, latency_ms))
    if sheet is not None:
        # With --json stdout stays pure JSON for pipes.
        print(f"contact sheet: {display_path(sheet)}", file=sys.stderr if args.json else sys.stdout)
    return 0
