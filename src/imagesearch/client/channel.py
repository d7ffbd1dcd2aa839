"""The gateway channel: its address, message sizes, and which failures are worth another try."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from imagesearch.client.credentials import CredentialsError, KeyInterceptor, api_key_from_env
from imagesearch.v1 import search_pb2_grpc

DEFAULT_GATEWAY = "127.0.0.1:50051"
ENV_CA_FILE = "IMAGESEARCH_CA_FILE"  # a PEM CA bundle: talk TLS to the gateway
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


def open_channel(address: str, api_key: str | None = None, ca_file: str | Path | None = None) -> grpc.Channel:
    """A channel to the gateway whose calls carry `api_key` (None: the one in the environment,
    imagesearch.client.credentials; none there: calls go without one). With `ca_file` (or
    $IMAGESEARCH_CA_FILE) it speaks TLS and trusts the server certificates that CA signed."""
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    target = normalise_target(address)
    ca = ca_file or os.environ.get(ENV_CA_FILE, "").strip() or None
    if ca is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        try:
            roots = Path(ca).expanduser().read_bytes()
        except OSError as err:
            raise CredentialsError(f"cannot read the CA file {ca}: {err.strerror}") from err
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(roots), options=options)
    key = api_key if api_key is not None else api_key_from_env()
    return grpc.intercept_channel(channel, KeyInterceptor(key)) if key else channel


def search_stub(channel: grpc.Channel) -> search_pb2_grpc.SearchServiceStub:
    return search_pb2_grpc.SearchServiceStub(channel)
