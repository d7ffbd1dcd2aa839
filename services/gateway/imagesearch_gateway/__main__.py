"""Run the gateway: `python -m imagesearch_gateway` (or `imagesearch-gateway`); `--help` lists its settings."""

from __future__ import annotations

from collections.abc import Sequence

from imagesearch.common.service import run_service
from imagesearch_gateway.app import GatewayBackend
from imagesearch_gateway.settings import GatewaySettings

DESCRIPTION = (
    "The public imagesearch gRPC gateway: SearchService (search by photo, catalog ingest), with a Redis result cache."
)


def main(argv: Sequence[str] | None = None) -> None:
    run_service("gateway", DESCRIPTION, GatewaySettings, GatewayBackend, argv)


if __name__ == "__main__":
    main()
