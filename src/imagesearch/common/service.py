"""The one entry point of every service: `python -m imagesearch_<name>` runs its `Service.main()`.

It parses the command line (only `--help`, which lists every setting), reads the settings from
the environment, sets up logging and tracing, builds the backend and serves it until SIGTERM or
SIGINT drains it. A bad setting ends the process with exit status 2 and one line naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, Self, TypeVar

from opentelemetry.sdk.trace import TracerProvider

from imagesearch.common.admission import AdmissionLimits
from imagesearch.common.config import SettingsError
from imagesearch.common.logs import configure_logging
from imagesearch.common.server import Backend, ServerOptions, ServiceServer, serve_until_signalled
from imagesearch.common.telemetry import build_tracer_provider


class ServiceSettings(Protocol):
    """What every service's settings have: an `imagesearch.common.config.Settings` dataclass that
    declares these (each service its own variables for them)."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def max_message_bytes(self) -> int: ...

    @property
    def max_in_flight(self) -> int: ...

    @property
    def max_in_flight_bytes(self) -> int: ...

    @property
    def grace_seconds(self) -> float: ...

    @property
    def metrics_port(self) -> int: ...

    @property
    def log_level(self) -> str: ...

    @property
    def log_format(self) -> str: ...

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self: ...

    @classmethod
    def help_text(cls) -> str: ...


S = TypeVar("S", bound=ServiceSettings)
BackendFactory = Callable[[S, TracerProvider], Backend]


@dataclass(frozen=True)
class Service(Generic[S]):
    """A service: its name, what it does, its settings and its backend. `main` is its entry point."""

    name: str
    description: str
    settings: type[S]
    backend: BackendFactory[S]

    def server(self, settings: S, provider: TracerProvider) -> ServiceServer:
        """The service's ServiceServer on its configured address, around a freshly built backend."""
        options = ServerOptions(
            host=settings.host,
            port=settings.port,
            max_message_bytes=settings.max_message_bytes,
            admission=AdmissionLimits(settings.max_in_flight, settings.max_in_flight_bytes),
            # Internal services keep reflection (grpcurl, debugging) and join their caller's trace;
            # the public gateway declares GATEWAY_REFLECTION and GATEWAY_TRUST_TRACE_CONTEXT, off.
            reflection=getattr(settings, "reflection", True),
            trust_trace_context=getattr(settings, "trust_trace_context", True),
            tls=getattr(settings, "tls_files", None),
            metrics_port=settings.metrics_port,
        )
        return ServiceServer(self.name, self.backend(settings, provider), options, provider)

    def main(self, argv: Sequence[str] | None = None) -> None:
        """`python -m imagesearch_<name>`: read the settings, serve until SIGTERM or SIGINT drains it."""
        parser = argparse.ArgumentParser(
            prog=f"imagesearch-{self.name}",
            description=f"{self.description} Configured entirely by environment variables.",
            epilog=self.settings.help_text(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.parse_args(argv)
        try:
            settings = self.settings.from_env()
        except SettingsError as err:
            print(f"imagesearch-{self.name}: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        configure_logging(self.name, settings.log_level, settings.log_format)
        server = self.server(settings, build_tracer_provider(self.name))
        asyncio.run(serve_until_signalled(server, grace=settings.grace_seconds))
