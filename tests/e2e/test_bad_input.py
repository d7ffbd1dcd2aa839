"""Hostile and malformed input gets a precise status and a clear message; servers stay healthy."""

from __future__ import annotations

import io
import struct
import zlib

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from support import open_channel, product_input, read_rows

from imagesearch.v1 import common_pb2, search_pb2

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size but carries no pixels (decoding it would be a bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


async def expect(code: grpc.StatusCode, call, *words: str) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    details = caught.value.details() or ""
    for word in words:
        assert word.lower() in details.lower(), details
    return details


@pytest.mark.parametrize(
    "payload, words",
    [
        (_jpeg()[:200], ["truncated"]),
        (bytes(range(256)) * 40, ["format"]),
        (_png_header(0, 0), ["0x0"]),
        (_png_header(50_000, 50_000), ["50000x50000"]),
        (b"GIF89a" + b"\x00" * 64, ["format"]),
    ],
    ids=["truncated-jpeg", "random-bytes", "zero-by-zero", "50k-by-50k-header", "gif"],
)
async def test_bad_query_images_are_invalid_arguments(gateway, payload: bytes, words: list[str]) -> None:
    await expect(grpc.StatusCode.INVALID_ARGUMENT, gateway.Search(search_pb2.SearchRequest(image=payload)), *words)


async def test_an_oversized_message_is_resource_exhausted(gateway) -> None:
    huge = b"\xff\xd8\xff" + b"\x00" * (9 * 1024 * 1024)
    await expect(grpc.StatusCode.RESOURCE_EXHAUSTED, gateway.Search(search_pb2.SearchRequest(image=huge)))


async def test_request_fields_are_validated(gateway) -> None:
    image = _jpeg()
    await expect(
        grpc.StatusCode.INVALID_ARGUMENT, gateway.Search(search_pb2.SearchRequest(image=image, top_k=100_000)), "top_k"
    )
    await expect(
        grpc.StatusCode.INVALID_ARGUMENT, gateway.Search(search_pb2.SearchRequest(image=image, top_k=-1)), "top_k"
    )
    await expect(grpc.StatusCode.INVALID_ARGUMENT, gateway.Search(search_pb2.SearchRequest()), "image or product_id")
    await expect(
        grpc.StatusCode.INVALID_ARGUMENT,
        gateway.Search(search_pb2.SearchRequest(image=image, min_score=7)),
        "min_score",
    )
    bad_box = common_pb2.BoundingBox(x_min=0.8, y_min=0, x_max=0.2, y_max=1)
    await expect(
        grpc.StatusCode.INVALID_ARGUMENT,
        gateway.Search(search_pb2.SearchRequest(image=image, region=bad_box)),
        "region",
    )
    inverted = common_pb2.Filter(price=common_pb2.PriceRange(min=50, max=10))
    await expect(
        grpc.StatusCode.INVALID_ARGUMENT,
        gateway.Search(search_pb2.SearchRequest(image=image, filter=inverted)),
        "price",
    )


async def test_unknown_products_are_not_found(gateway) -> None:
    await expect(
        grpc.StatusCode.NOT_FOUND,
        gateway.Search(search_pb2.SearchRequest(product_id="no-such-product")),
        "no-such-product",
    )
    await expect(
        grpc.StatusCode.NOT_FOUND,
        gateway.GetProduct(search_pb2.GetProductRequest(product_id="no-such-product")),
        "no-such-product",
    )


@pytest.mark.parametrize(
    "hostile",
    ['" or 1==1 or "', "\\", 'a"]) or (category in ["', "x\nor true", "robert'); drop collection --", '名前 "quoted"'],
)
async def test_hostile_filter_strings_match_literally_or_are_refused(gateway, hostile: str) -> None:
    image = _jpeg()
    request = search_pb2.SearchRequest(
        image=image,
        skip_cache=True,
        filter=common_pb2.Filter(
            categories=[hostile],
            brands=[hostile],
            attributes=[common_pb2.AttributeFilter(key="color", values=[hostile])],
        ),
    )
    try:
        reply = await gateway.Search(request)
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    else:
        assert list(reply.hits) == []  # nothing is literally in that category
    bad_key = common_pb2.Filter(attributes=[common_pb2.AttributeFilter(key='color"] or true or ["', values=["x"])])
    await expect(
        grpc.StatusCode.INVALID_ARGUMENT, gateway.Search(search_pb2.SearchRequest(image=image, filter=bad_key)), "key"
    )


async def test_a_bad_image_fails_only_its_product_and_says_why(gateway, dev_set) -> None:
    good = (dev_set / read_rows(dev_set / "catalog.csv")[50]["image"]).read_bytes()
    reply = await gateway.UpsertProducts(
        search_pb2.UpsertProductsRequest(
            products=[
                product_input("b-good", [good]),
                product_input("b-bad", [good, b"not an image"]),
                product_input("b-none", []),
            ]
        )
    )
    good_result, bad_result, none_result = reply.results
    assert good_result.ok and good_result.images_indexed == 1
    assert not bad_result.ok and "not written" in bad_result.error
    assert [f.index for f in bad_result.image_failures] == [1]
    assert bad_result.image_failures[0].error.reason == common_pb2.IMAGE_ERROR_REASON_UNSUPPORTED_FORMAT
    assert not none_result.ok and "no images" in none_result.error
    await expect(grpc.StatusCode.NOT_FOUND, gateway.GetProduct(search_pb2.GetProductRequest(product_id="b-bad")))
    await gateway.DeleteProducts(search_pb2.DeleteProductsRequest(product_ids=["b-good"]))


async def test_duplicate_and_empty_ids_are_refused(gateway) -> None:
    image = _jpeg()
    twice = search_pb2.UpsertProductsRequest(products=[product_input("d-1", [image]), product_input("d-1", [image])])
    await expect(grpc.StatusCode.INVALID_ARGUMENT, gateway.UpsertProducts(twice), "more than once")
    empty = search_pb2.UpsertProductsRequest(products=[product_input("", [image])])
    await expect(grpc.StatusCode.INVALID_ARGUMENT, gateway.UpsertProducts(empty), "product_id")


async def test_every_server_is_still_serving_after_the_abuse(fleet) -> None:
    for server in (fleet.gateway, fleet.embedder, fleet.retriever):
        async with open_channel(server.address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, server.name
