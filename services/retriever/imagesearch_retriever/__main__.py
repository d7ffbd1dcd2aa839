"""Run the retriever: `python -m imagesearch_retriever` (or `imagesearch-retriever`); `--help` lists its settings."""

from imagesearch_retriever.app import SERVICE

main = SERVICE.main

if __name__ == "__main__":
    main()
