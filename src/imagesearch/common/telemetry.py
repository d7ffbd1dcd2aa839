"""One OpenTelemetry setup for all services.

Configured by the standard variables: OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES name the service; OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) turns on the OTLP/gRPC exporter (e.g. to
Jaeger on :4317); OTEL_TRACES_EXPORTER=console prints spans; OTEL_SDK_DISABLED
turns tracing off. The sampler follows OTEL_TRACES_SAMPLER, read by the SDK.

The provider is returned, not installed globally, so several services can
share one process (as in the tests) each with its own service name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from imagesearch.common.interceptors import with_unary

# Health checks and reflection would drown the traces of real requests.
_UNTRACED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def build_tracer_provider(
    default_service_name: str,
    extra_processors: tuple[SpanProcessor, ...] = (),
    environ: Mapping[str, str] | None = None,
) -> TracerProvider:
    env = os.environ if environ is None else environ
    attributes = {SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or default_service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return provider
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        # Imported lazily: the exporter pulls in its own gRPC channel machinery.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if "console" in env.get("OTEL_TRACES_EXPORTER", ""):
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    for processor in extra_processors:
        provider.add_span_processor(processor)
    return provider


def _traced(info: object) -> bool:
    method = getattr(info, "method", "") or ""
    if isinstance(method, bytes):
        method = method.decode()
    return not method.startswith(_UNTRACED_PREFIXES)


def server_interceptor(provider: TracerProvider) -> grpc.aio.ServerInterceptor[Any, Any]:
    interceptor: grpc.aio.ServerInterceptor[Any, Any] = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=provider, filter_=_traced
    )
    return interceptor


def client_interceptors(provider: TracerProvider) -> list[grpc.aio.ClientInterceptor]:
    interceptors: list[grpc.aio.ClientInterceptor] = aio_client_interceptors(  # type: ignore[no-untyped-call]
        tracer_provider=provider, filter_=_traced
    )
    return interceptors


# W3C trace context and baggage: what a caller uses to join (and force sampling of) our traces.
TRACE_HEADERS = frozenset({"traceparent", "tracestate", "baggage"})


class _WithoutTraceHeaders:
    """A servicer context whose metadata lacks the trace headers; everything else is the real one."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def invocation_metadata(self) -> tuple[Any, ...]:
        return tuple(m for m in self._context.invocation_metadata() or () if m.key not in TRACE_HEADERS)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class IgnoreCallerTraceContext(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Installed outside the tracing interceptor of a public listener: each call starts a trace of
    its own, so an outside caller can neither join our traces nor force them to be sampled."""

    async def intercept_service(self, continuation: Any, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        async def untrusted(request: Any, context: Any) -> Any:
            return await inner(request, _WithoutTraceHeaders(context))

        return with_unary(handler, untrusted)
