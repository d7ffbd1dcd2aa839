"""The checked-in imagesearch.v1 package matches protos/ (regenerate with tools/gen_protos.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import grpc
import pytest

from imagesearch.v1 import (
    embedder_pb2,
    embedder_pb2_grpc,
    retriever_pb2,
    retriever_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_is_not_stale() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_protos.py"), "--check"], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("messages", "services", "name"),
    [
        (search_pb2, search_pb2_grpc, "SearchService"),
        (embedder_pb2, embedder_pb2_grpc, "EmbedderService"),
        (retriever_pb2, retriever_pb2_grpc, "RetrieverService"),
    ],
)
def test_every_rpc_of_the_protos_has_a_stub_method_and_a_servicer_method(
    messages: ModuleType, services: ModuleType, name: str
) -> None:
    descriptor = messages.DESCRIPTOR.services_by_name[name]
    assert descriptor.full_name == f"imagesearch.v1.{name}"
    rpcs = [method.name for method in descriptor.methods]
    assert rpcs, name
    with grpc.insecure_channel("127.0.0.1:1") as channel:
        stub = getattr(services, f"{name}Stub")(channel)
        assert all(callable(getattr(stub, rpc)) for rpc in rpcs)
    servicer = getattr(services, f"{name}Servicer")
    assert all(callable(getattr(servicer, rpc)) for rpc in rpcs)
    assert callable(getattr(services, f"add_{name}Servicer_to_server"))
