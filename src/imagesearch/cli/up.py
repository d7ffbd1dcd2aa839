"""`imagesearch up`: run the whole system locally until Ctrl-C.

All the work is in `imagesearch.stack.local.LocalStack`; this module is the
command line around it: options, the demo catalog, the banner, the wait.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from imagesearch.auth.local import ADMIN_KEY_FILE
from imagesearch.cli.common import CliError, Subparsers, add_command, format_table
from imagesearch.cli.index import failure_report, reasons_summary, summary_line
from imagesearch.client.catalog import CatalogError, display_path, load_catalog
from imagesearch.client.channel import DEFAULT_GATEWAY
from imagesearch.client.credentials import ENV_KEY, ENV_KEY_FILE
from imagesearch.client.indexer import index_catalog

if TYPE_CHECKING:
    from imagesearch.stack.local import LocalStack


UP_HELP = "start the whole stack locally (and index the demo catalog)"

UP_DESCRIPTION = """\
Start Triton (model_repo/), Milvus, Redis and the embedder, retriever and gateway
services on this machine, wait until every service reports SERVING, index the demo
catalog (demo/catalog.csv; products already indexed are skipped), print the endpoints,
and run until Ctrl-C or SIGTERM, which stops everything in reverse order.

A Prometheus (Debian: `apt-get install prometheus`) scrapes every part every 5 s
(jobs gateway, embedder, retriever, triton, milvus) and loads the alert rules in
deploy/prometheus/rules/; without one installed the stack runs all the same.

A part that crashes meanwhile (Milvus, Triton, Redis, Prometheus or a service) is restarted on
its address after a back-off (1 s, doubling to 30 s), saying so, while the rest keeps
running; one that crashes 5 times within 10 minutes stops the stack, showing its log.

The Milvus data lives in the runtime folder, so the catalog survives restarts. Logs:
<runtime-dir>/logs/<service>.log, Milvus in <runtime-dir>/milvus/, Triton in <runtime-dir>/triton/,
Prometheus (configuration, log, data) in <runtime-dir>/prometheus/.
"""

UP_EPILOG = """\
examples:
  imagesearch up
  imagesearch up --no-demo --runtime-dir /tmp/is --gateway-port 50061
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 imagesearch up   # traces to Jaeger

environment:
  IMAGESEARCH_HOME     the checkout to run (default: found from this install or the cwd)
  REDIS_URL            use this Redis when it answers; otherwise a private redis-server is started
  OTEL_*               passed to every service (each gets its own OTEL_SERVICE_NAME)
  LOG_LEVEL            services' log level (or --log-level)
  PROMETHEUS_BIN       the Prometheus executable (default: prometheus on PATH)
"""


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "up", help=UP_HELP, description=UP_DESCRIPTION, epilog=UP_EPILOG, gateway=False)
    p.add_argument(
        "--demo",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="index demo/catalog.csv once the stack is up (default: on)",
    )
    p.add_argument(
        "--prometheus",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run a Prometheus that scrapes every part, when one is installed (default: on)",
    )
    p.add_argument(
        "--repo", type=Path, help="the checkout (pyproject.toml + model_repo/); default: $IMAGESEARCH_HOME or found"
    )
    p.add_argument(
        "--model-repo",
        type=Path,
        default=os.environ.get("IMAGESEARCH_MODEL_REPO") or None,
        help="Triton model repository to serve (default: $IMAGESEARCH_MODEL_REPO or <repo>/model_repo)",
    )
    p.add_argument("--runtime-dir", type=Path, help="data and logs (default: <repo>/var)")
    p.add_argument("--host", default="127.0.0.1", help="interface the services listen on (default 127.0.0.1)")
    p.add_argument(
        "--gateway-port", type=int, default=50051, metavar="PORT", help="public gateway port (default 50051)"
    )
    p.add_argument("--embedder-port", type=int, default=0, metavar="PORT", help="default: a free port")
    p.add_argument("--retriever-port", type=int, default=0, metavar="PORT", help="default: a free port")
    p.add_argument("--triton-port", type=int, default=0, metavar="PORT", help="Triton gRPC port (default: a free port)")
    p.add_argument("--milvus-port", type=int, default=0, metavar="PORT", help="default: a free port")
    p.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        help="services' log level (default: $LOG_LEVEL or INFO)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds to wait for everything to become ready (default 300)",
    )
    p.set_defaults(func=run)


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _say(message: str) -> None:
    print(f"[up] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    # Imported here so `imagesearch search` does not pay for the launchers' imports.
    from imagesearch.stack.local import LocalStack, StackConfig, StackError, default_runtime_dir, find_repo_root

    try:
        repo = find_repo_root(args.repo)
    except StackError as err:
        raise CliError(str(err)) from None
    runtime = (args.runtime_dir or default_runtime_dir(repo)).resolve()
    config = StackConfig(
        repo_root=repo,
        runtime_dir=runtime,
        host=args.host,
        gateway_port=args.gateway_port,
        model_repo=Path(args.model_repo).resolve() if args.model_repo else None,
        embedder_port=args.embedder_port,
        retriever_port=args.retriever_port,
        triton_grpc_port=args.triton_port,
        milvus_port=args.milvus_port,
        redis_url=os.environ.get("REDIS_URL") or None,
        log_level=args.log_level,
        ready_timeout=args.timeout,
        prometheus=args.prometheus,
    )
    # pymilvus (imported by the Milvus launcher) warns about its own use of pkg_resources.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    # SIGTERM (and a closed terminal) get the same orderly stop as Ctrl-C.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    stack = LocalStack(config, progress=_say)
    _say(f"starting the local stack from {repo} (runtime folder {display_path(runtime)})")
    try:
        try:
            stack.start()
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - every launcher raises its own kind; one clear line + log tail
            raise CliError(f"the local stack did not start: {err}") from None
        if args.demo:
            _index_demo(repo, stack.gateway_address, stack.admin_key)
        _print_banner(stack, repo)
        return _watch(stack)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        _say("stopping (Ctrl-C again to skip the graceful drain)")
        return 0
    finally:
        stack.stop()
        _say("stopped")


def _index_demo(repo: Path, gateway: str, api_key: str) -> None:
    catalog = repo / "demo" / "catalog.csv"
    try:
        items = load_catalog(catalog)
    except CatalogError as err:
        _say(f"demo catalog not indexed: {err}")
        return
    _say(f"indexing the demo catalog ({len(items)} products; already indexed ones are skipped)")
    outcome = index_catalog(gateway, items, skip_existing=True, api_key=api_key)
    if outcome.failures:
        print(failure_report(outcome.failures, limit=10), file=sys.stderr)
        print(f"failures by reason: {reasons_summary(outcome.failures)}", file=sys.stderr)
        _say(f"for the full report: imagesearch --gateway {gateway} index {display_path(catalog)}")
    _say(f"demo catalog: {summary_line(outcome)}")


def _print_banner(stack: LocalStack, repo: Path) -> None:
    rows = [
        [name, address, display_path(note) if note.startswith("/") else note]
        for name, address, note in stack.endpoints()
    ]
    print()
    print(format_table(["part", "address", "log / data"], rows, flexible=(2,), left_truncated=(2,)))
    print()
    print(f"ready. try:  {_try_command(stack.gateway_address, repo, stack.admin_key_file)}")
    print("Ctrl-C stops everything.", flush=True)


def _try_command(gateway: str, repo: Path, key_file: Path) -> str:
    # A demo photo whose product the baseline model ranks first (a red apple).
    preferred = repo / "demo" / "queries" / "qfbf79e76.jpg"
    queries = [preferred] if preferred.exists() else sorted((repo / "demo" / "queries").glob("*.jpg"))
    query = display_path(queries[0]) if queries else "photo.jpg"
    default = os.environ.get("IMAGESEARCH_GATEWAY") or DEFAULT_GATEWAY
    flag = "" if gateway == default else f" --gateway {gateway}"
    # The CLI finds the admin key of the default runtime folder by itself; another one it is told.
    from imagesearch.stack.local import default_runtime_dir

    found = key_file.resolve() == (default_runtime_dir(repo) / ADMIN_KEY_FILE).resolve() and not os.environ.get(ENV_KEY)
    prefix = "" if found else f"{ENV_KEY_FILE}={display_path(key_file)} "
    return f"{prefix}imagesearch{flag} search {query}"


def _watch(stack: LocalStack) -> int:
    """Supervise until interrupted: a child that dies is restarted (LocalStack.supervise says so);
    one that keeps crashing ends the run with its log tail."""
    while True:
        time.sleep(0.5)
        problem = stack.supervise()
        if problem is not None:
            raise CliError(problem)
