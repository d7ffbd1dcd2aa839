"""The lifecycle every service shares, after grpc's own asyncio examples.

`ServiceServer.start()` binds the port, registers health and reflection, and
reports NOT_SERVING until the service's `Backend.connect()` has succeeded
(retrying with back-off, so a service may start before its dependencies).
While serving it re-checks the dependencies and flips health accordingly.
`stop(grace)` reports NOT_SERVING first, so load balancers drain it, lets
in-flight calls finish within `grace`, then closes the backend's clients.
`serve_until_signalled` wires SIGTERM/SIGINT to that drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common import keepalive
from imagesearch.common.admission import AdmissionInterceptor, AdmissionLimits
from imagesearch.common.interceptors import ErrorMappingInterceptor
from imagesearch.common.metrics import MetricsInterceptor, ServiceMetrics
from imagesearch.common.telemetry import IgnoreCallerTraceContext, server_interceptor
from imagesearch.common.tls import TlsFiles, server_credentials

log = logging.getLogger(__name__)

# What a servicer method receives (grpc-stubs makes it generic in the request and response types).
RpcContext: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

# Health service name that is SERVING for as long as the process runs (until a
# drain): for liveness probes, which must not restart a pod whose *dependency* is down.
LIVENESS = "liveness"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Backend(Protocol):
    """What a service plugs into `ServiceServer`. A backend may also offer `interceptors` (a sequence
    of grpc.aio.ServerInterceptor), installed inside error mapping and before admission control,
    and `register_metrics(metrics)` to add its own series to the service's /metrics."""

    @property
    def service_names(self) -> Sequence[str]:
        """Fully-qualified names of the gRPC services it implements (for health and reflection)."""
        ...

    def register(self, server: grpc.aio.Server) -> None:
        """Add the servicers to the server."""

    async def connect(self) -> None:
        """Build clients and check dependencies; raise if they are not ready yet."""

    async def check(self) -> None:
        """Cheap re-check that the dependencies still answer; raise if not."""

    async def close(self) -> None:
        """Close the clients built by connect()."""


@dataclass(frozen=True)
class ServerOptions:
    host: str = "0.0.0.0"
    port: int = 0
    max_message_bytes: int = 16 * 1024 * 1024
    admission: AdmissionLimits = field(default_factory=AdmissionLimits)
    connect_retry_seconds: float = 1.0
    health_check_interval_seconds: float = 2.0  # also how soon a breaker finds its dependency back
    reflection: bool = True  # off on a public listener: it tells strangers every method there is
    trust_trace_context: bool = True  # False on a public listener: callers start no traces of ours
    tls: TlsFiles | None = None  # None: plaintext (inside a cluster, or behind a TLS-terminating balancer)
    metrics_port: int | None = None  # Prometheus /metrics on this port (0: a free one); None: none


class ServiceServer:
    def __init__(self, name: str, backend: Backend, options: ServerOptions, tracer_provider: TracerProvider) -> None:
        self.name, self._backend, self._options, self._tracer_provider = name, backend, options, tracer_provider
        self._server: grpc.aio.Server | None = None
        self._health = HealthServicer()
        self._watcher: asyncio.Task[None] | None = None
        self.metrics = ServiceMetrics(name)
        self._connected = asyncio.Event()
        self.port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        opts = self._options
        self.admission = AdmissionInterceptor(self.name, opts.admission)
        admission = self.admission
        self.metrics.calls_in_flight.set_function(lambda: float(admission.calls_in_flight))
        self.metrics.counters(
            "imagesearch_admission_refused",
            "Calls refused at once with RESOURCE_EXHAUSTED by admission control, by the limit they hit",
            "limit",
            lambda: dict(admission.refused),
        )
        register = getattr(self._backend, "register_metrics", None)
        if register is not None:
            register(self.metrics)
        if opts.metrics_port is not None:
            self.metrics.serve(opts.host, opts.metrics_port)
        self._server = grpc.aio.server(
            # Outermost first: the span covers everything; refusals by admission control are
            # DomainErrors, so they are mapped (and logged) like any other.
            # A backend's own interceptors (the gateway's authentication) come before admission
            # control, so a caller refused by them holds no slot.
            interceptors=[
                *(() if opts.trust_trace_context else (IgnoreCallerTraceContext(),)),
                server_interceptor(self._tracer_provider),
                # Inside the span (its trace id is the exemplar), outside error mapping (it sees
                # the final status).
                MetricsInterceptor(self.metrics),
                ErrorMappingInterceptor(),
                *getattr(self._backend, "interceptors", ()),
                self.admission,
            ],
            options=[
                ("grpc.max_receive_message_length", opts.max_message_bytes),
                ("grpc.max_send_message_length", opts.max_message_bytes),
                *keepalive.server_options(),
            ],
        )
        self._backend.register(self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        if opts.reflection:
            reflection.enable_server_reflection(
                [
                    *self._backend.service_names,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ],
                self._server,
            )
        await self._set_health(NOT_SERVING)
        await self._health.set(LIVENESS, SERVING)
        bind = f"{opts.host}:{opts.port}"
        if opts.tls is None:
            self.port = self._server.add_insecure_port(bind)
        else:
            self.port = self._server.add_secure_port(bind, server_credentials(opts.tls, self.name))
        if self.port == 0:
            raise OSError(f"{self.name}: could not bind {opts.host}:{opts.port}")
        await self._server.start()
        log.info(
            "%s listening on %s:%d%s (NOT_SERVING until dependencies are ready)",
            self.name,
            opts.host,
            self.port,
            " with TLS" + (" (client certificates required)" if opts.tls and opts.tls.client_ca else "")
            if opts.tls
            else "",
        )
        self._watcher = asyncio.create_task(self._watch_dependencies(), name=f"{self.name}-health")

    async def wait_until_serving(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def _set_health(self, status: int) -> None:
        for service in ("", *self._backend.service_names):
            await self._health.set(service, status)
        self.metrics.serving.set(1 if status == SERVING else 0)

    async def _watch_dependencies(self) -> None:
        """Connect (retrying), then keep health in step with the dependencies."""
        opts = self._options
        while True:
            try:
                await self._backend.connect()
                break
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure just means "not ready yet"
                log.warning("%s: dependencies not ready: %s", self.name, err)
                await asyncio.sleep(opts.connect_retry_seconds)
        self._connected.set()
        await self._set_health(SERVING)
        log.info("%s: SERVING", self.name)
        healthy = True
        while True:
            await asyncio.sleep(opts.health_check_interval_seconds)
            try:
                await self._backend.check()
                ok = True
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001
                ok = False
                if healthy:
                    log.warning("%s: dependency check failed, NOT_SERVING: %s", self.name, err)
            if ok != healthy:
                healthy = ok
                await self._set_health(SERVING if ok else NOT_SERVING)
                if ok:
                    log.info("%s: dependencies back, SERVING", self.name)

    async def stop(self, grace: float = 10.0) -> None:
        await self._health.enter_graceful_shutdown()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._server is not None:
            await self._server.stop(grace)
        await self._backend.close()
        self.metrics.close()
        self._tracer_provider.force_flush()
        log.info("%s stopped", self.name)


async def serve_until_signalled(server: ServiceServer, grace: float) -> None:
    """Run `server` until SIGTERM or SIGINT, then drain it gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await stop.wait()
    log.info("%s: signal received, draining for up to %.0f s", server.name, grace)
    await server.stop(grace)
