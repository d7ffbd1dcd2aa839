"""Run the gateway: `python -m imagesearch_gateway` (or `imagesearch-gateway`); `--help` lists its settings."""

from imagesearch_gateway.app import SERVICE

main = SERVICE.main

if __name__ == "__main__":
    main()
