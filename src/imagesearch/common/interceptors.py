"""Server interceptor that maps exceptions to gRPC statuses in one place."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from imagesearch.common.errors import DomainError

log = logging.getLogger(__name__)


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Turns `DomainError`s into their status and anything unexpected into INTERNAL.

    Unexpected exceptions are logged with their traceback but never leak their
    text to the caller.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # streaming handlers (health Watch, reflection) manage their own errors
        inner = handler.unary_unary
        method = handler_call_details.method

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await inner(request, context)
            except DomainError as err:
                code, message = err.code, err.message
                log.info("%s -> %s: %s", method, code.name, message)
            except grpc.aio.AbortError:
                raise
            except Exception:
                log.exception("%s failed unexpectedly", method)
                code, message = grpc.StatusCode.INTERNAL, "internal error; see the server log"
            await context.abort(code, message)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
