"""Domain errors and their one translation into gRPC statuses.

Cores raise these plain-Python exceptions; `ErrorMappingInterceptor` (see
`imagesearch.common.interceptors`) turns them into statuses, so no handler
deals with gRPC codes itself.
"""

from __future__ import annotations

import grpc


class DomainError(Exception):
    """Base class: an error with a gRPC status code and a message meant for the caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(DomainError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


# Downstream statuses that describe the caller's request: passed through as they are.
_CALLER_FAULTS = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
}


def from_downstream(dependency: str, err: grpc.aio.AioRpcError) -> DomainError:
    """Map a failed call to another service onto the status our caller should see.

    Request faults keep their code and message; outages become UNAVAILABLE or
    DEADLINE_EXCEEDED naming the dependency, so an operator can tell which hop failed.
    """
    code = err.code()
    details = err.details() or code.name
    if code in _CALLER_FAULTS:
        return _CALLER_FAULTS[code](details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"{dependency} did not answer in time")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return Unavailable(f"{dependency} is unavailable: {details}")
    return DomainError(f"{dependency} failed: {code.name}: {details}")
