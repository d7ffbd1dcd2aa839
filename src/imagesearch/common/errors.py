"""Domain errors: what went wrong for the caller, in plain Python.

Cores and adapters raise these; `ErrorMappingInterceptor` (imagesearch.common.interceptors) turns
each into its gRPC status, so no handler deals with gRPC codes itself, and no core imports gRPC.
`status` names the grpc.StatusCode the error becomes.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class: an error with a status and a message meant for the caller."""

    status = "INTERNAL"

    def __init__(self, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        # A hint for the caller (sent as `retry-after-ms` and `grpc-retry-pushback-ms` trailers).
        self.retry_after_seconds = retry_after_seconds


class InvalidArgument(DomainError):
    status = "INVALID_ARGUMENT"


class NotFound(DomainError):
    status = "NOT_FOUND"


class ResourceExhausted(DomainError):
    status = "RESOURCE_EXHAUSTED"


class FailedPrecondition(DomainError):
    status = "FAILED_PRECONDITION"


class Unavailable(DomainError):
    status = "UNAVAILABLE"


class DeadlineExceeded(DomainError):
    status = "DEADLINE_EXCEEDED"


class Unauthenticated(DomainError):
    status = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    status = "PERMISSION_DENIED"
