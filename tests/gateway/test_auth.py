"""Who may call the public API: keys, scopes, catalogs, revocation, rates (real gateways).

Every public RPC needs `authorization: Bearer <key>`; the tests' own clients send an admin key
(support.open_channel), so here other keys are made with support.add_key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support import KEYS_FILE, add_key, jpeg, open_channel, product_input

from imagesearch.auth.keys import KeyFile, Scope
from imagesearch.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="session")

UNAUTHENTICATED, DENIED = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
RELOAD = 0.2  # the test gateways' GATEWAY_API_KEYS_RELOAD_SECONDS


def photo() -> bytes:
    from PIL import Image

    return jpeg(Image.new("RGB", (96, 96), (200, 40, 40)))


Call = Callable[[search_pb2_grpc.SearchServiceStub, str], Awaitable[Any]]

# One call of every public RPC, aimed at a catalog.
CALLS: dict[str, Call] = {
    "Search": lambda stub, catalog: stub.Search(search_pb2.SearchRequest(catalog=catalog, image=photo()), timeout=30),
    "GetProduct": lambda stub, catalog: stub.GetProduct(
        search_pb2.GetProductRequest(catalog=catalog, product_id="nope"), timeout=30
    ),
    "UpsertProducts": lambda stub, catalog: stub.UpsertProducts(
        search_pb2.UpsertProductsRequest(catalog=catalog, products=[product_input("auth-1", [photo()])]), timeout=60
    ),
    "DeleteProducts": lambda stub, catalog: stub.DeleteProducts(
        search_pb2.DeleteProductsRequest(catalog=catalog, product_ids=["nope"]), timeout=30
    ),
    "DeleteCatalog": lambda stub, catalog: stub.DeleteCatalog(
        search_pb2.DeleteCatalogRequest(catalog=catalog or "auth_nothing"), timeout=30
    ),
}


async def code_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


async def wait_for_reload() -> None:
    await asyncio.sleep(RELOAD * 3)


@pytest.mark.parametrize("rpc", CALLS)
async def test_every_public_rpc_refuses_anonymous_and_wrong_key_callers(fleet: Any, rpc: str) -> None:
    address = fleet.gateway.address
    async with open_channel(address, anonymous=True) as channel:
        code, details = await code_of(CALLS[rpc](search_pb2_grpc.SearchServiceStub(channel), ""))
        assert (code, "authorization: Bearer" in details) == (UNAUTHENTICATED, True), details
    for wrong in ("isk_00000000_" + "A" * 43, "not-a-key", "isk_" + "f" * 500):
        async with open_channel(address, wrong) as channel:
            code, details = await code_of(CALLS[rpc](search_pb2_grpc.SearchServiceStub(channel), ""))
            assert code == UNAUTHENTICATED, (wrong[:20], code, details)
            assert wrong not in details  # a secret is never echoed


async def test_a_search_only_key_searches_and_reads_but_cannot_write_or_delete(fleet: Any) -> None:
    _, token = add_key([Scope.SEARCH], ["@default"])
    await wait_for_reload()
    async with open_channel(fleet.gateway.address, token) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        assert (await code_of(CALLS["Search"](stub, "")))[0] == grpc.StatusCode.OK
        assert (await code_of(CALLS["GetProduct"](stub, "")))[0] == grpc.StatusCode.NOT_FOUND
        for rpc in ("UpsertProducts", "DeleteProducts", "DeleteCatalog"):
            code, details = await code_of(CALLS[rpc](stub, ""))
            assert code == DENIED and f"may not call {rpc}" in details, (rpc, code, details)


async def test_a_key_for_one_catalog_cannot_touch_or_even_detect_another(fleet: Any) -> None:
    async with open_channel(fleet.gateway.address) as admin:  # shop_b exists, shop_c does not
        await search_pb2_grpc.SearchServiceStub(admin).UpsertProducts(
            search_pb2.UpsertProductsRequest(catalog="shop_b", products=[product_input("b-1", [photo()])]),
            timeout=60,
        )
    key_id, token = add_key([Scope.ADMIN], ["shop_a"])
    await wait_for_reload()
    async with open_channel(fleet.gateway.address, token) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        assert (await code_of(CALLS["UpsertProducts"](stub, "shop_a")))[0] == grpc.StatusCode.OK
        for rpc, call in CALLS.items():
            existing = await code_of(call(stub, "shop_b"))
            missing = await code_of(call(stub, "shop_c"))
            assert existing[0] == missing[0] == DENIED, (rpc, existing, missing)
            # Word for word the same, but for the name: nothing tells shop_b exists.
            assert existing[1].replace("shop_b", "X") == missing[1].replace("shop_c", "X"), (existing, missing)
            assert key_id in existing[1]
        await CALLS["DeleteCatalog"](stub, "shop_a")
    async with open_channel(fleet.gateway.address) as admin:
        await search_pb2_grpc.SearchServiceStub(admin).DeleteCatalog(
            search_pb2.DeleteCatalogRequest(catalog="shop_b"), timeout=30
        )


async def test_a_revoked_key_stops_working_on_every_replica_within_the_reload_interval(fleet: Any) -> None:
    key_id, token = add_key([Scope.SEARCH], ["@default"])
    second, _ = await fleet.start_gateway()
    try:
        await wait_for_reload()
        addresses = [fleet.gateway.address, second.address]
        for address in addresses:
            async with open_channel(address, token) as channel:
                assert (await code_of(CALLS["GetProduct"](search_pb2_grpc.SearchServiceStub(channel), "")))[
                    0
                ] == grpc.StatusCode.NOT_FOUND
        KeyFile(KEYS_FILE).revoke(key_id)
        revoked_at = time.monotonic()
        refused_after = []
        for address in addresses:
            async with open_channel(address, token) as channel:
                stub = search_pb2_grpc.SearchServiceStub(channel)
                while (await code_of(CALLS["GetProduct"](stub, "")))[0] != UNAUTHENTICATED:
                    assert time.monotonic() - revoked_at < 5 * RELOAD + 1, "the revoked key still works"
                    await asyncio.sleep(0.02)
                refused_after.append(time.monotonic() - revoked_at)
        print(f"revoked key refused by both replicas after {max(refused_after):.2f} s (reload every {RELOAD} s)")
    finally:
        await fleet.stop_extra()


async def test_a_key_over_its_rate_is_refused_with_a_retry_hint(fleet: Any) -> None:
    _, token = add_key([Scope.SEARCH], ["@default"], rate_per_second=2.0)  # a burst of 4 (2 s), then 2/s
    await wait_for_reload()
    async with open_channel(fleet.gateway.address, token) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        outcomes = []
        for _ in range(8):
            try:
                await CALLS["GetProduct"](stub, "")
            except grpc.aio.AioRpcError as err:
                outcomes.append((err.code(), dict(tuple(err.trailing_metadata() or ()))))
        refused = [trailers for code, trailers in outcomes if code == grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert len(refused) >= 3, outcomes  # 8 at once: 4 from the burst (NOT_FOUND), the rest refused
        assert all(0 < int(t["retry-after-ms"]) <= 1000 and "grpc-retry-pushback-ms" in t for t in refused)
        await asyncio.sleep(0.6)  # a token back
        assert (await code_of(CALLS["GetProduct"](stub, "")))[0] == grpc.StatusCode.NOT_FOUND
    async with open_channel(fleet.gateway.address) as admin:  # another key is not slowed by it
        assert (await code_of(CALLS["GetProduct"](search_pb2_grpc.SearchServiceStub(admin), "")))[
            0
        ] == grpc.StatusCode.NOT_FOUND


async def test_guessing_keys_is_throttled_per_client(fleet: Any) -> None:
    gateway, _ = await fleet.start_gateway(auth_failures_per_minute=5)
    try:
        codes = []
        async with open_channel(gateway.address, "isk_0badc0de_" + "x" * 43) as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            for _ in range(8):
                codes.append((await code_of(CALLS["GetProduct"](stub, "")))[0])
        assert codes[:5] == [UNAUTHENTICATED] * 5 and set(codes[5:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    finally:
        await fleet.stop_extra()


async def test_health_needs_no_key_and_the_public_port_serves_no_reflection(fleet: Any) -> None:
    async with open_channel(fleet.gateway.address, anonymous=True) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in stream:
                pass
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_turning_authentication_off_is_explicit_and_logged(fleet: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="imagesearch_gateway.app"):
        gateway, _ = await fleet.start_gateway(auth=False)
    try:
        assert any("GATEWAY_AUTH=false" in r.message for r in caplog.records)
        async with open_channel(gateway.address, anonymous=True) as channel:
            code, _ = await code_of(CALLS["GetProduct"](search_pb2_grpc.SearchServiceStub(channel), ""))
            assert code == grpc.StatusCode.NOT_FOUND
    finally:
        await fleet.stop_extra()


async def test_an_oversized_authorization_header_gets_a_clear_status_not_a_crash(fleet: Any) -> None:
    async with open_channel(fleet.gateway.address, "isk_" + "x" * 20_000) as channel:
        code, _ = await code_of(CALLS["GetProduct"](search_pb2_grpc.SearchServiceStub(channel), ""))
    # gRPC's own header limit (8 KiB) refuses it before we see it; shorter ones are malformed keys.
    assert code in (UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED), code
    async with open_channel(fleet.gateway.address) as channel:  # and the gateway serves on
        assert (await code_of(CALLS["GetProduct"](search_pb2_grpc.SearchServiceStub(channel), "")))[
            0
        ] == grpc.StatusCode.NOT_FOUND


async def test_keys_list_shows_when_a_key_was_last_used(fleet: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from imagesearch.cli import main as cli_main

    used_id, token = add_key([Scope.SEARCH], ["@default"], name="used")
    idle_id, _ = add_key([Scope.SEARCH], ["@default"], name="idle")
    await wait_for_reload()
    async with open_channel(fleet.gateway.address, token) as channel:
        await code_of(CALLS["GetProduct"](search_pb2_grpc.SearchServiceStub(channel), ""))
    argv = ["keys", "--file", str(KEYS_FILE), "list", "--redis", fleet.redis_url]
    for _ in range(50):  # noted in the background, after the call
        capsys.readouterr()
        assert await asyncio.to_thread(cli_main.main, argv) == 0
        rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
        if "never" not in rows[used_id]:
            break
        await asyncio.sleep(0.05)
    assert time.strftime("%Y-%m-%d") in rows[used_id].split("used", 1)[1]  # created and last used today
    assert "never" in rows[idle_id] and "never" not in rows[used_id]
