"""Builders shared by the end-to-end specifications."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import grpc
from PIL import Image

from imagesearch.v1 import common_pb2, search_pb2


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def product_input(
    product_id: str,
    images: list[bytes],
    *,
    category: str = "misc",
    brand: str = "acme",
    price: float = 10.0,
    attributes: dict[str, str] | None = None,
    title: str = "",
) -> search_pb2.ProductInput:
    return search_pb2.ProductInput(
        product=common_pb2.Product(
            product_id=product_id,
            title=title or product_id,
            category=category,
            brand=brand,
            price=price,
            attributes=attributes or {},
        ),
        images=[search_pb2.ProductImage(content=content) for content in images],
    )


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def side_by_side(left: Path, right: Path, size: int = 320) -> bytes:
    """A photo of two products next to each other, for region-of-interest queries."""
    canvas = Image.new("RGB", (2 * size, size), "white")
    canvas.paste(Image.open(left).convert("RGB").resize((size, size)), (0, 0))
    canvas.paste(Image.open(right).convert("RGB").resize((size, size)), (size, 0))
    return jpeg(canvas)


def open_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ],
    )
