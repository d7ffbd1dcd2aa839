"""Run the embedder: `python -m imagesearch_embedder` (or `imagesearch-embedder`); `--help` lists its settings."""

from __future__ import annotations

from collections.abc import Sequence

from imagesearch.common.service import run_service
from imagesearch_embedder.app import EmbedderBackend
from imagesearch_embedder.settings import EmbedderSettings

DESCRIPTION = (
    "The imagesearch embedder: EmbedderService validates and decodes uploaded images (JPEG, PNG, WebP) "
    "and embeds them with a model served by Triton Inference Server."
)


def main(argv: Sequence[str] | None = None) -> None:
    run_service("embedder", DESCRIPTION, EmbedderSettings, EmbedderBackend, argv)


if __name__ == "__main__":
    main()
