"""pymilvus' exceptions as the domain errors a retriever's caller sees: never an INTERNAL for a state
Milvus passes through on its own (restarting, loading, rate limiting)."""

from __future__ import annotations

import grpc
import pytest
from pymilvus.exceptions import MilvusException

from imagesearch.common.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from imagesearch_retriever.milvus.errors import CollectionGone, NotLoaded, translate

URI = "http://127.0.0.1:19530"


@pytest.mark.parametrize(
    ("err", "expected", "says"),
    [
        (MilvusException(code=101, message="collection not loaded"), NotLoaded, "is not loaded"),
        # After a restart the collection is loaded again; a call may give up waiting for it.
        (
            MilvusException(
                code=1, message="Retry timeout: 3s, message=wait for loading collection timeout, collection: c"
            ),
            NotLoaded,
            "still loading",
        ),
        (MilvusException(code=2, message="connect failed"), Unavailable, "milvus unavailable"),
        (MilvusException(code=grpc.StatusCode.DEADLINE_EXCEEDED, message="slow"), DeadlineExceeded, "did not answer"),
        (MilvusException(code=8, message="rate limit exceeded"), ResourceExhausted, "rate limiting"),
        (MilvusException(code=100, message="collection not found"), CollectionGone, "c"),
    ],
)
def test_transient_states_of_milvus_are_domain_errors(err: Exception, expected: type, says: str) -> None:
    translated = translate(err, URI, 3.0, "c")
    assert isinstance(translated, expected)
    assert says in str(translated)
    if isinstance(translated, Unavailable):
        assert "milvus" in str(translated)  # the caller learns which dependency


def test_an_unexpected_error_is_left_as_it_is_for_the_internal_error_path() -> None:
    odd = MilvusException(code=65535, message="something new")
    assert translate(odd, URI, 3.0, "c") is odd
