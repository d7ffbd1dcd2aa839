"""The gateway channel: its address, message sizes, and which failures are worth another try."""

from __future__ import annotations

import os

import grpc

from imagesearch.v1 import search_pb2_grpc

DEFAULT_GATEWAY = "127.0.0.1:50051"
# Upsert batches carry raw images; the gateway's own cap decides, not ours.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# Codes worth another try: the gateway or one of its dependencies is briefly away.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED})


def default_gateway() -> str:
    """$IMAGESEARCH_GATEWAY, else DEFAULT_GATEWAY."""
    return os.environ.get("IMAGESEARCH_GATEWAY", "").strip() or DEFAULT_GATEWAY


def normalise_target(address: str) -> str:
    """Accept `host:port` as well as the `grpc://host:port` people paste from docs."""
    for prefix in ("grpc://", "http://", "dns:///"):
        if address.startswith(prefix):
            return address[len(prefix) :].rstrip("/")
    return address


def open_channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(
        normalise_target(address),
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )


def search_stub(channel: grpc.Channel) -> search_pb2_grpc.SearchServiceStub:
    return search_pb2_grpc.SearchServiceStub(channel)
