"""Run the retriever: `python -m imagesearch_retriever` (or `imagesearch-retriever`); `--help` lists its settings."""

from __future__ import annotations

from collections.abc import Sequence

from imagesearch.common.service import run_service
from imagesearch_retriever.app import RetrieverBackend
from imagesearch_retriever.settings import RetrieverSettings

DESCRIPTION = (
    "The internal imagesearch RetrieverService: vector search with filters, one hit per product, "
    "and catalog storage on Milvus (one collection per catalog and model)."
)


def main(argv: Sequence[str] | None = None) -> None:
    run_service("retriever", DESCRIPTION, RetrieverSettings, RetrieverBackend, argv)


if __name__ == "__main__":
    main()
