"""Run the embedder: `python -m imagesearch_embedder` (or `imagesearch-embedder`); `--help` lists its settings."""

from imagesearch_embedder.app import SERVICE

main = SERVICE.main

if __name__ == "__main__":
    main()
