"""TLS on the public listener: served from certificate files, plaintext refused, the CLI's --ca,
and a certificate replaced in place picked up without a restart."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import grpc
import pytest
from support import ADMIN_KEY, TlsBundle, open_channel

from imagesearch.cli import main as cli_main
from imagesearch.client.credentials import AioKeyInterceptor
from imagesearch.common import probe
from imagesearch.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="session")


def tls_channel(port: int, ca: Path) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(
        f"localhost:{port}",
        grpc.ssl_channel_credentials(ca.read_bytes()),
        interceptors=[AioKeyInterceptor(ADMIN_KEY)],
    )


async def get_missing(channel: grpc.aio.Channel) -> grpc.StatusCode:
    try:
        await search_pb2_grpc.SearchServiceStub(channel).GetProduct(
            search_pb2.GetProductRequest(product_id="nope"), timeout=10
        )
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def test_the_gateway_serves_tls_and_refuses_plaintext(fleet: Any, tmp_path: Path) -> None:
    tls = TlsBundle(tmp_path)
    gateway, _ = await fleet.start_gateway(tls_cert_file=str(tls.cert), tls_key_file=str(tls.key))
    try:
        async with tls_channel(gateway.port, tls.ca) as channel:
            assert await get_missing(channel) == grpc.StatusCode.NOT_FOUND  # through TLS, authenticated
        async with open_channel(gateway.address) as plaintext:
            assert await get_missing(plaintext) == grpc.StatusCode.UNAVAILABLE
        stranger = TlsBundle(tmp_path / "other", "other")  # a client that trusts another CA
        async with tls_channel(gateway.port, stranger.ca) as channel:
            assert await get_missing(channel) == grpc.StatusCode.UNAVAILABLE

        # The container probe, told the CA, checks health over TLS (in a thread: it blocks).
        assert await asyncio.to_thread(probe.status, gateway.address, ca_file=str(tls.ca)) == probe.SERVING
        assert await asyncio.to_thread(probe.status, gateway.address) is None  # plaintext gets no answer

        # The CLI, told the CA, connects (and finds nothing to delete).
        argv = ["--gateway", f"localhost:{gateway.port}", "delete", "nope"]
        assert await asyncio.to_thread(cli_main.main, [*argv[:2], "--ca", str(tls.ca), *argv[2:]]) == 0
        assert await asyncio.to_thread(cli_main.main, argv) == 1  # without it: no connection
    finally:
        await fleet.stop_extra()


async def test_a_certificate_replaced_in_place_is_served_to_new_connections(fleet: Any, tmp_path: Path) -> None:
    first = TlsBundle(tmp_path / "first", "first")
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(first.cert, live / "tls.crt")
    shutil.copy(first.key, live / "tls.key")
    gateway, _ = await fleet.start_gateway(tls_cert_file=str(live / "tls.crt"), tls_key_file=str(live / "tls.key"))
    try:
        async with tls_channel(gateway.port, first.ca) as channel:
            assert await get_missing(channel) == grpc.StatusCode.NOT_FOUND
        second = TlsBundle(tmp_path / "second", "second")  # renewed, by another CA even
        shutil.copy(second.key, live / "tls.key.new")
        shutil.copy(second.cert, live / "tls.crt.new")
        (live / "tls.key.new").replace(live / "tls.key")
        (live / "tls.crt.new").replace(live / "tls.crt")
        async with tls_channel(gateway.port, second.ca) as channel:
            assert await get_missing(channel) == grpc.StatusCode.NOT_FOUND
        async with tls_channel(gateway.port, first.ca) as channel:
            assert await get_missing(channel) == grpc.StatusCode.UNAVAILABLE  # the old certificate is gone
    finally:
        await fleet.stop_extra()
