"""Prometheus metrics of a service, on a port of its own (`<SERVICE>_METRICS_PORT`).

Names follow OpenTelemetry's RPC semantic conventions as Prometheus spells them:
`rpc_server_duration_seconds{rpc_system, rpc_service, rpc_method, rpc_grpc_status_code}`, a
histogram whose buckets resolve 1-100 ms. Beside it: whether the service is SERVING, and the calls
it holds now (what admission control bounds). Each service has its own registry, so several can
share one process (the tests) without mixing their series.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from imagesearch.common.breaker import Breaker
from imagesearch.common.interceptors import with_unary

# Seconds: dense where searches live (1-100 ms), then up to the longest deadlines.
DURATION_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Probes and reflection would drown the calls that matter, as in the traces.
_UNMEASURED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.rpc_server_duration = Histogram(
            "rpc_server_duration_seconds",
            "Time to answer a gRPC call, by method and status",
            ["rpc_system", "rpc_service", "rpc_method", "rpc_grpc_status_code"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.serving = Gauge(
            "imagesearch_serving",
            "1 while the service reports SERVING (its dependencies answer)",
            registry=self.registry,
        )
        # Read from admission control at every scrape (ServiceServer wires it): its count is the truth.
        self.calls_in_flight = Gauge(
            "imagesearch_calls_in_flight",
            "Calls being served now (admission control bounds them)",
            registry=self.registry,
        )
        self.dependency_up = Gauge(
            "imagesearch_dependency_up",
            "1 while calls to the dependency go through, 0 while its breaker fails them fast",
            ["dependency"],
            registry=self.registry,
        )
        self._server: Any = None
        self.port = 0

    def watch_breaker(self, dependency: str, breaker: Breaker) -> None:
        """Read at every scrape: the breaker's state is the truth, no copy to keep in step."""
        self.dependency_up.labels(dependency).set_function(lambda: 0.0 if breaker.is_open else 1.0)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A value read at every scrape (memory in use, ...)."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def counters(self, name: str, documentation: str, label: str, read: Callable[[], dict[str, float]]) -> None:
        """Counters a service already keeps (e.g. the cache's hits and misses), read at every scrape."""
        self.registry.register(_ReadCounters(name, documentation, label, read))

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics endpoint (0: a free port); the port it listens on."""
        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(self._server.server_port)
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Outermost: it sees each call's final status, after error mapping has set it."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_unary is None or method.startswith(_UNMEASURED_PREFIXES):
            return handler
        inner = handler.unary_unary
        service_name, _, method_name = method.lstrip("/").partition("/")
        histogram = self._metrics.rpc_server_duration

        async def measured(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = "OK"
            try:
                return await inner(request, context)  # type: ignore[arg-type]
            except grpc.aio.AbortError:
                code = _code_name(context.code())
                raise
            except BaseException:  # cancelled by the caller, or a bug the error interceptor missed
                code = "CANCELLED" if context.cancelled() else "UNKNOWN"
                raise
            finally:
                histogram.labels("grpc", service_name, method_name, code).observe(time.perf_counter() - started)

        return with_unary(handler, measured)


def _code_name(status: object) -> str:
    """The status a context holds (a StatusCode, or its number in some grpc versions) as its name."""
    if isinstance(status, grpc.StatusCode):
        return status.name
    for candidate in grpc.StatusCode:
        if candidate.value[0] == status:
            return candidate.name
    return "UNKNOWN"


class _ReadCounters(Collector):
    def __init__(self, name: str, documentation: str, label: str, read: Callable[[], dict[str, float]]) -> None:
        self._name, self._documentation, self._label, self._read = name, documentation, label, read

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._documentation, labels=[self._label])
        for value, count in sorted(self._read().items()):
            family.add_metric([value], count)
        yield family

    def describe(self) -> Iterable[CounterMetricFamily]:
        return []
