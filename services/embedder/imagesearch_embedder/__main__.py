"""Run the embedder: `python -m imagesearch_embedder` (or `imagesearch-embedder`)."""

from __future__ import annotations

import argparse
import asyncio

from imagesearch.common.server import configure_logging, serve_until_signalled
from imagesearch.common.telemetry import build_tracer_provider
from imagesearch_embedder.app import build_server
from imagesearch_embedder.settings import ENV_VARS, EmbedderSettings


def _parser() -> argparse.ArgumentParser:
    table = "\n".join(f"  {name:<28} {meaning} (default: {default or 'empty'})" for name, default, meaning in ENV_VARS)
    return argparse.ArgumentParser(
        prog="imagesearch-embedder",
        description="The imagesearch embedder: EmbedderService validates and decodes uploaded images "
        "(JPEG, PNG, WebP) and embeds them with a model served by Triton Inference Server. "
        "Configured entirely by environment variables.",
        epilog=f"environment:\n{table}\n  OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT, ... standard OpenTelemetry settings",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main() -> None:
    _parser().parse_args()
    settings = EmbedderSettings.from_env()
    configure_logging(settings.log_level)
    server = build_server(settings, build_tracer_provider("embedder"))
    asyncio.run(serve_until_signalled(server, grace=settings.grace_seconds))


if __name__ == "__main__":
    main()
