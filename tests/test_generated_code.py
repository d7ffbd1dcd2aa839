"""The checked-in imagesearch.v1 package matches protos/ (regenerate with tools/gen_protos.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_generated_code_is_not_stale() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_protos.py"), "--check"], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_every_service_is_importable_from_the_one_generated_package() -> None:
    from imagesearch.v1 import embedder_pb2_grpc, retriever_pb2_grpc, search_pb2_grpc

    assert search_pb2_grpc.SearchServiceStub and embedder_pb2_grpc.EmbedderServiceStub
    assert retriever_pb2_grpc.RetrieverServiceStub
