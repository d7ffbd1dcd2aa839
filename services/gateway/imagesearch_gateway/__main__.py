"""Run the gateway: `python -m imagesearch_gateway` (or `imagesearch-gateway`)."""

from __future__ import annotations

import argparse
import asyncio

from imagesearch.common.server import configure_logging, serve_until_signalled
from imagesearch.common.telemetry import build_tracer_provider
from imagesearch_gateway.app import build_server
from imagesearch_gateway.settings import ENV_VARS, GatewaySettings


def _parser() -> argparse.ArgumentParser:
    table = "\n".join(f"  {name:<32} {meaning} (default: {default})" for name, default, meaning in ENV_VARS)
    return argparse.ArgumentParser(
        prog="imagesearch-gateway",
        description="The public imagesearch gRPC gateway: SearchService (search by photo, catalog ingest), "
        "with a Redis result cache. Configured entirely by environment variables.",
        epilog=f"environment:\n{table}\n  OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT, ... standard OpenTelemetry settings",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main() -> None:
    _parser().parse_args()
    settings = GatewaySettings.from_env()
    configure_logging(settings.log_level)
    server = build_server(settings, build_tracer_provider("gateway"))
    asyncio.run(serve_until_signalled(server, grace=settings.grace_seconds))


if __name__ == "__main__":
    main()
