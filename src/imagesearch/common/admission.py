"""Admission control: bounded work in flight, refused in milliseconds with RESOURCE_EXHAUSTED.

A service under a burst must neither queue without bound (every caller then waits out its
deadline) nor allocate without bound (a pod OOM-killed loses every call it held). So each server
admits at most `max_in_flight` calls and `max_in_flight_bytes` of request messages at once, and
refuses the rest at once, naming the limit; clients back off and retry (imagesearch.client.indexer
does). Health and reflection are never refused: a loaded pod is busy, not dead.

Both are `imagesearch.common.budget.Budget`s: a reservation either fits now or fails now.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import grpc

from imagesearch.common.budget import Budget, mib
from imagesearch.common.errors import ResourceExhausted
from imagesearch.common.interceptors import with_unary

# Calls that admission control never refuses.
_EXEMPT_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True)
class AdmissionLimits:
    max_in_flight: int = 256  # concurrent calls
    max_in_flight_bytes: int = 256 * 1024 * 1024  # their request messages, serialised


class AdmissionInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses a unary call with RESOURCE_EXHAUSTED when the server already holds its limit of calls
    or of request bytes. Installed inside the error-mapping interceptor, so the refusal is a
    DomainError like any other (logged once, its status set in one place)."""

    def __init__(self, service: str, limits: AdmissionLimits) -> None:
        self._calls = Budget(limits.max_in_flight, f"{service}: concurrent calls", lambda n: f"{n} calls")
        self._bytes = Budget(limits.max_in_flight_bytes, f"{service}: request memory", mib)
        self.refused = {"calls": 0, "bytes": 0}  # by the limit hit (the service's /metrics)

    @property
    def calls_in_flight(self) -> int:
        return self._calls.used

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_unary is None or method.startswith(_EXEMPT_PREFIXES):
            return handler
        inner = handler.unary_unary
        calls, memory, refused = self._calls, self._bytes, self.refused

        async def admitted(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            size = request.ByteSize() if hasattr(request, "ByteSize") else 0
            with ExitStack() as held:
                for limit, budget, amount in (("calls", calls, 1), ("bytes", memory, size)):
                    try:
                        held.enter_context(budget.holding(amount))
                    except ResourceExhausted:
                        refused[limit] += 1
                        raise
                return await inner(request, context)  # type: ignore[arg-type]

        return with_unary(handler, admitted)
