"""Prometheus metrics of a service, on a port of its own (`<SERVICE>_METRICS_PORT`).

Names follow OpenTelemetry's RPC semantic conventions as Prometheus spells them:
`rpc_server_duration_seconds{rpc_system, rpc_service, rpc_method, rpc_grpc_status_code}` for the
calls a service answers, `rpc_client_duration_seconds{...}` for the gRPC calls it makes, histograms
whose buckets resolve 1-100 ms. Calls to the engines (Triton, Milvus, Redis) are timed by operation
and outcome in `imagesearch_dependency_duration_seconds`. Beside them: whether the service is
SERVING, the calls it holds now (what admission control bounds) and those it refused. Each service
has its own registry, so several can share one process (the tests) without mixing their series.

Observations made inside a sampled span carry its trace id as an exemplar (served to scrapers that
ask for OpenMetrics; Prometheus keeps them with `--enable-feature=exemplar-storage`), so a slow
bucket on a dashboard leads to a trace in Jaeger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
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
        self.rpc_client_duration = Histogram(
            "rpc_client_duration_seconds",
            "Time for a gRPC call this service made to answer, by method and status",
            ["rpc_system", "rpc_service", "rpc_method", "rpc_grpc_status_code"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._dependency_duration = Histogram(
            "imagesearch_dependency_duration_seconds",
            "Time for a call to an engine (Triton, Milvus, Redis) to answer, by operation and outcome",
            ["dependency", "operation", "outcome"],
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

    def dependency(self, dependency: str) -> DependencyCalls:
        """The timer an adapter wraps each call to `dependency` in."""
        return DependencyCalls(dependency, self._dependency_duration)

    def watch_breaker(self, dependency: str, breaker: Breaker) -> None:
        """Read at every scrape: the breaker's state is the truth, no copy to keep in step."""
        self.dependency_up.labels(dependency).set_function(lambda: 0.0 if breaker.is_open else 1.0)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A value read at every scrape (memory in use, ...)."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def counters(self, name: str, documentation: str, label: str, read: Callable[[], dict[str, float]]) -> None:
        """Counters a service already keeps (e.g. the cache's hits and misses), read at every scrape."""
        self.registry.register(
            _Read(CounterMetricFamily, name, documentation, (label,), lambda: {(k,): v for k, v in read().items()})
        )

    def counter(self, name: str, documentation: str, labels: Iterable[str] = ()) -> Counter:
        """A counter the service increments itself (`name` without `_total`)."""
        return Counter(name, documentation, list(labels), registry=self.registry)

    def labelled_gauges(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        read: Callable[[], dict[tuple[str, ...], float]],
    ) -> None:
        """Gauges keyed by their label values (the model served, products per catalog), read at every
        scrape: series whose key is gone (a rolled-back model, a dropped catalog) vanish with it."""
        self.registry.register(_Read(GaugeMetricFamily, name, documentation, labels, read))

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
                histogram.labels("grpc", service_name, method_name, code).observe(
                    time.perf_counter() - started, exemplar=trace_exemplar()
                )

        return with_unary(handler, measured)


class MetricsClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Times each call a client channel makes, by method and the status it ended with
    (OpenTelemetry's rpc.client.duration). Installed inside the tracing interceptor, so the
    call's own span is current and lends its trace id to the exemplar."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._histogram = metrics.rpc_client_duration

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        method = client_call_details.method
        method = method.decode() if isinstance(method, bytes) else method
        service_name, _, method_name = method.lstrip("/").partition("/")
        started = time.perf_counter()
        exemplar = trace_exemplar()
        call = await continuation(client_call_details, request)
        code = "UNKNOWN"
        try:
            await call
            code = "OK"
        except grpc.aio.AioRpcError as err:
            code = err.code().name
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        finally:
            self._histogram.labels("grpc", service_name, method_name, code).observe(
                time.perf_counter() - started, exemplar=exemplar
            )
        return call


class DependencyCalls:
    """Times calls to one engine: `with calls.timed("search"): ...` around each call, sync or async
    code alike. Outcome `ok`, `error`, or `cancelled` (our caller gave up: not the engine's fault)."""

    def __init__(self, dependency: str, histogram: Histogram | None) -> None:
        self._dependency, self._histogram = dependency, histogram

    @contextmanager
    def timed(self, operation: str) -> Iterator[None]:
        if self._histogram is None:
            yield
            return
        started = time.perf_counter()
        outcome = "error"
        try:
            yield
            outcome = "ok"
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self._histogram.labels(self._dependency, operation, outcome).observe(
                time.perf_counter() - started, exemplar=trace_exemplar()
            )


# For adapters built without a server (tests of one adapter, tools): time nothing.
UNTIMED = DependencyCalls("", None)


def trace_exemplar() -> dict[str, str] | None:
    """The current span's ids, when it is sampled (an unsampled trace id leads nowhere)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


def _code_name(status: object) -> str:
    """The status a context holds (a StatusCode, or its number in some grpc versions) as its name."""
    if isinstance(status, grpc.StatusCode):
        return status.name
    for candidate in grpc.StatusCode:
        if candidate.value[0] == status:
            return candidate.name
    return "UNKNOWN"


class _Read(Collector):
    """A family of series read at every scrape from values the service keeps itself, keyed by their
    label values: counters (the cache's hits) or gauges (products per catalog)."""

    def __init__(
        self,
        family: type[CounterMetricFamily] | type[GaugeMetricFamily],
        name: str,
        documentation: str,
        labels: Sequence[str],
        read: Callable[[], dict[tuple[str, ...], float]],
    ) -> None:
        self._family, self._name, self._documentation, self._labels, self._read = (
            family,
            name,
            documentation,
            list(labels),
            read,
        )

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        family = self._family(self._name, self._documentation, labels=self._labels)
        for values, amount in sorted(self._read().items()):
            family.add_metric(list(values), amount)
        yield family

    def describe(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        return []
