"""Fixtures of the retriever tests: one real Milvus standalone for the session.

Self-contained on purpose (it shadows a `milvus_uri` defined higher up): the
retriever tests need nothing but Milvus. Tests isolate themselves with unique
collection prefixes instead of restarting the server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from imagesearch.stack.milvus import LocalMilvus


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Milvus on free ports; MILVUS_TEST_URI points the tests at a running one instead."""
    external = os.environ.get("MILVUS_TEST_URI")
    if external:
        yield external
        return
    # The data dies with the session, so a quick stop is fine.
    milvus = LocalMilvus(base_dir=tmp_path_factory.mktemp("milvus"), stop_timeout=3.0)
    milvus.start()
    try:
        yield milvus.uri
    finally:
        milvus.stop()


@pytest.fixture
def unique_prefix() -> str:
    """A collection prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"
