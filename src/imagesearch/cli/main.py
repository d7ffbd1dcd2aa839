"""Entry point of the `imagesearch` command (see `imagesearch --help`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import grpc

from imagesearch.cli import adapt, evaluate, index, keys, search, up
from imagesearch.cli.common import CA_HELP, CliError, resolve_api_key, rpc_error_line
from imagesearch.client.channel import DEFAULT_GATEWAY, default_gateway
from imagesearch.client.credentials import CredentialsError

DESCRIPTION = """\
Visual product search: a shopper's photo in, the catalog products that look like it out.

This tool talks to the public gRPC gateway (imagesearch.v1.SearchService), and can
start a complete local stack (Triton, Milvus, Redis and the gateway, embedder and
retriever services) for development and demos.
"""

EPILOG = f"""\
examples:
  imagesearch up                                   # start everything, index the demo catalog
  imagesearch search demo/queries/qfbf79e76.jpg    # search with a photo
  imagesearch search photo.jpg --category animals/birds --price-max 100 --sheet out.png
  imagesearch search --like p00496c64 --top-k 5    # more like an indexed product
  imagesearch index demo/catalog.csv               # add or update products (CSV or folder)
  imagesearch delete p00496c64 p006990d5
  imagesearch eval ../shared/datasets/dev --out dev.json   # quality benchmark
  imagesearch adapt ../shared/datasets/dev         # adapt the embedding to a catalog
  imagesearch keys create --scope search --catalog shop_a   # an API key for a storefront

  Run `imagesearch <command> --help` for the options of each command.

environment:
  IMAGESEARCH_GATEWAY           gateway address for search/index/delete (default {DEFAULT_GATEWAY})
  IMAGESEARCH_API_KEY           the API key to send (else IMAGESEARCH_API_KEY_FILE, a file holding one,
                                else the local stack's admin key, <repo>/var/admin.key)
  IMAGESEARCH_CA_FILE           talk TLS to the gateway, trusting this CA bundle (or --ca)
  IMAGESEARCH_HOME              repository root (pyproject.toml + model_repo/) for `up`
  REDIS_URL                     `up` uses this Redis for the cache when it answers, else starts one
  OTEL_EXPORTER_OTLP_ENDPOINT   `up` passes every OTEL_* variable to the services; set this
                                (e.g. http://127.0.0.1:4317) to export traces to Jaeger
  LOG_LEVEL                     services' log level under `up` (default INFO)

exit status: 0 success, 1 failure (a failed RPC, or products that failed to index),
2 bad usage, 130 interrupted.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagesearch",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--gateway",
        default=default_gateway(),
        metavar="HOST:PORT",
        help=f"gateway address (default: $IMAGESEARCH_GATEWAY or {DEFAULT_GATEWAY})",
    )
    parser.add_argument("--ca", default=None, metavar="PEM", help=CA_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    up.add_parser(subparsers)
    search.add_parser(subparsers)
    index.add_parsers(subparsers)
    evaluate.add_parser(subparsers)
    adapt.add_parser(subparsers)
    keys.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "check"):
        args.check(args)
    try:
        if not hasattr(args, "api_key"):
            args.api_key = resolve_api_key()
        code: int = args.func(args)
        return code
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except CredentialsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except grpc.RpcError as err:
        print(f"error: {rpc_error_line(err, args.gateway)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `imagesearch search ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
