"""Where domain errors meet gRPC: statuses out of a server (the interceptor) and into a client (`from_downstream`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from imagesearch.common import deadline
from imagesearch.common.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)

log = logging.getLogger(__name__)


def with_unary(
    handler: grpc.RpcMethodHandler[Any, Any], behaviour: Callable[..., Any]
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same method with its unary-unary behaviour replaced: how our server interceptors wrap a
    call (error mapping, authentication, admission control, trace-context hygiene)."""
    return grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Turns `DomainError`s into their status and anything unexpected into INTERNAL.

    Unexpected exceptions are logged with their traceback but never leak their
    text to the caller.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # streaming handlers (health Watch, reflection) manage their own errors
        inner = handler.unary_unary
        method = handler_call_details.method

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            trailers: tuple[tuple[str, str], ...] = ()
            token = deadline.received(context.time_remaining())  # every downstream call is bounded by it
            try:
                return await inner(request, context)  # type: ignore[arg-type]  # the aio handler takes the aio context
            except DomainError as err:
                code, message = grpc.StatusCode[err.status], err.message
                log.info("%s -> %s: %s", method, code.name, message)
                if err.retry_after_seconds is not None:
                    ms = str(max(1, round(err.retry_after_seconds * 1000)))
                    trailers = (("retry-after-ms", ms), ("grpc-retry-pushback-ms", ms))
            except grpc.aio.AbortError:
                raise
            except Exception:
                log.exception("%s failed unexpectedly", method)
                code, message = grpc.StatusCode.INTERNAL, "internal error; see the server log"
            finally:
                deadline.reset(token)
            await context.abort(code, message, trailers)

        return with_unary(handler, guarded)


# Downstream statuses that describe the caller's request: passed through as they are.
_CALLER_FAULTS: dict[grpc.StatusCode, type[DomainError]] = {
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
