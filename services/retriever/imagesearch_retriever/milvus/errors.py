"""pymilvus' and gRPC's exceptions as the domain errors callers see, naming Milvus."""

from __future__ import annotations

import grpc
from pymilvus.exceptions import ConnectionNotExistException, MilvusException, MilvusUnavailableException

from imagesearch.common.errors import DeadlineExceeded, DomainError, ResourceExhausted, Unavailable

_CONNECT_FAILED = 2  # pymilvus Status.CONNECT_FAILED
_COLLECTION_NOT_FOUND = 100
_COLLECTION_NOT_LOADED = 101
_RATE_LIMITED = 8


class CollectionGone(Exception):
    """A collection was dropped behind our back (by another replica, or DropCatalog)."""


class NotLoaded(Unavailable):
    """A collection is not loaded (Milvus restarted: collections come back released). The store
    forgets it, so the next call loads it again; until then the caller sees UNAVAILABLE."""


def describe(err: Exception) -> str:
    if isinstance(err, MilvusException):
        return err.message or type(err).__name__
    if isinstance(err, grpc.RpcError) and callable(getattr(err, "details", None)):
        return f"{err.code().name}: {err.details()}"
    return str(err) or type(err).__name__


def translate(err: Exception, uri: str, timeout: float, collection: str | None) -> Exception:
    """The exception to raise instead of `err`; `err` itself when it is unexpected (INTERNAL, logged)."""
    if isinstance(err, DomainError):
        return err
    late = DeadlineExceeded(f"milvus at {uri} did not answer within {timeout:g} s")
    if isinstance(err, grpc.RpcError):
        code = err.code() if callable(getattr(err, "code", None)) else None
        return (
            late
            if code == grpc.StatusCode.DEADLINE_EXCEEDED
            else Unavailable(f"milvus unavailable at {uri}: {describe(err)}")
        )
    if isinstance(err, MilvusException):
        code = err.code
        if callable(code):  # pymilvus' retry decorator passes the gRPC error's code() method itself
            code = code()
        if isinstance(code, grpc.StatusCode):  # pymilvus gave up retrying a transport failure
            return (
                late
                if code == grpc.StatusCode.DEADLINE_EXCEEDED
                else Unavailable(f"milvus unavailable at {uri}: {err.message}")
            )
        if code == _CONNECT_FAILED or isinstance(err, ConnectionNotExistException | MilvusUnavailableException):
            return Unavailable(f"milvus unavailable at {uri}: {err.message}")
        if code == _COLLECTION_NOT_FOUND and collection is not None:
            return CollectionGone(collection)
        if code == _COLLECTION_NOT_LOADED or "not loaded" in (err.message or ""):
            return NotLoaded(f"milvus at {uri}: collection {collection} is not loaded (Milvus restarted?); loading it")
        if "loading collection timeout" in (err.message or ""):
            # Loading it again after a restart took longer than the call may wait: a transient state.
            return NotLoaded(f"milvus at {uri}: collection {collection} is still loading (Milvus restarted?); retry")
        if code == _RATE_LIMITED:
            return ResourceExhausted(f"milvus is rate limiting: {err.message}")
    return err
