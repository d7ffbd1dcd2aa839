"""Run the retriever: `python -m imagesearch_retriever` (or `imagesearch-retriever`)."""

from __future__ import annotations

import argparse
import asyncio
import warnings

# pymilvus 2.4 imports pkg_resources, whose deprecation warning would open every log and --help.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from imagesearch.common.server import configure_logging, serve_until_signalled
from imagesearch.common.telemetry import build_tracer_provider
from imagesearch_retriever.app import build_server
from imagesearch_retriever.settings import ENV_VARS, RetrieverSettings


def _parser() -> argparse.ArgumentParser:
    table = "\n".join(f"  {name:<30} {meaning} (default: {default or 'empty'})" for name, default, meaning in ENV_VARS)
    return argparse.ArgumentParser(
        prog="imagesearch-retriever",
        description="The internal imagesearch RetrieverService: vector search with filters, one hit per product, "
        "and catalog storage on Milvus (one collection per model). Configured entirely by environment variables.",
        epilog=f"environment:\n{table}\n  OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT, ... standard OpenTelemetry settings",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main() -> None:
    _parser().parse_args()
    settings = RetrieverSettings.from_env()
    configure_logging(settings.log_level)
    server = build_server(settings, build_tracer_provider("retriever"))
    asyncio.run(serve_until_signalled(server, grace=settings.grace_seconds))


if __name__ == "__main__":
    main()
