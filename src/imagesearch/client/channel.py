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


def is_too_large(err: grpc.RpcError) -> bool:
    """RESOURCE_EXHAUSTED from gRPC's message-size cap: this request will never fit as it is."""
    return err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (err.details() or "")


def is_retryable(err: grpc.RpcError) -> bool:
    """Worth another try after a back-off: a dependency briefly away, or a server at its admission
    limits (RESOURCE_EXHAUSTED other than a message too large: busy now, not too big)."""
    code = err.code()
    return code in RETRYABLE_CODES or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and not is_too_large(err))


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
