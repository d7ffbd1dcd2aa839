"""`imagesearch keys create|list|revoke`: the API keys of a key file (docs/security.md)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from imagesearch.auth.keys import ALL_CATALOGS, DEFAULT_CATALOG, KeyFile, KeyFileError, Scope, new_key
from imagesearch.auth.local import KEYS_FILE, REDIS_URL_FILE
from imagesearch.auth.usage import read_last_used
from imagesearch.cli.common import CliError, Subparsers, add_command, format_table
from imagesearch.common.errors import DomainError
from imagesearch.stack.redis import without_password

ENV_KEYS_FILE = "IMAGESEARCH_KEYS_FILE"

KEYS_HELP = "create, list and revoke the gateway's API keys"
KEYS_DESCRIPTION = f"""\
Manage the API keys the gateway accepts, in its key file (GATEWAY_API_KEYS_FILE). Each key has
scopes (search: Search and GetProduct; write: UpsertProducts and DeleteProducts; admin:
DeleteCatalog, and everything else) and the catalogs it may touch ({DEFAULT_CATALOG} is the default
catalog, {ALL_CATALOGS!r} every catalog). Only a hash of each key is stored: `create` prints the key
once. Gateways re-read the file when it changes (every GATEWAY_API_KEYS_RELOAD_SECONDS), so a
revocation reaches every replica that reads this file within that time.
"""
KEYS_EPILOG = f"""\
examples:
  imagesearch keys create --scope search --catalog shop_a --name storefront
  imagesearch keys create --scope search --scope write --catalog shop_a --catalog shop_b --rate 20
  imagesearch keys list
  imagesearch keys revoke 3f9c2a1e

environment:
  {ENV_KEYS_FILE}  the key file (default: the local stack's, <repo>/var/{KEYS_FILE})
"""


def add_parser(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "keys", help=KEYS_HELP, description=KEYS_DESCRIPTION, epilog=KEYS_EPILOG, gateway=False)
    p.add_argument(
        "--file", type=Path, metavar="PATH", help=f"the key file (default: ${ENV_KEYS_FILE} or the local stack's)"
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="make a key and print it (once)")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=[s.value for s in Scope],
        help="what it may do (repeat for several)",
    )
    create.add_argument(
        "--catalog",
        action="append",
        required=True,
        metavar="NAME",
        help=f"a catalog it may touch (repeat for several; {DEFAULT_CATALOG} for the default, {ALL_CATALOGS!r} for all)",
    )
    create.add_argument("--name", default="", help="who or what it is for (shown by list and in audit lines)")
    create.add_argument(
        "--rate", type=float, metavar="N", help="calls per second per gateway replica (default: the gateway's)"
    )
    listing = actions.add_parser(
        "list", help="the keys: ids, scopes, catalogs, when made and last used, whether revoked (never the keys)"
    )
    listing.add_argument(
        "--redis",
        metavar="URL",
        help="where the gateways note each key's last use (default: $REDIS_URL, or the local stack's)",
    )
    listing.add_argument(
        "--namespace",
        default=os.environ.get("CACHE_NAMESPACE", "imagesearch"),
        help="the gateways' CACHE_NAMESPACE (default: $CACHE_NAMESPACE or imagesearch)",
    )
    revoke = actions.add_parser("revoke", help="stop a key from working")
    revoke.add_argument("key_id", metavar="ID")
    p.set_defaults(func=run)


def _key_file(args: argparse.Namespace) -> KeyFile:
    if args.file is not None:
        return KeyFile(args.file)
    if os.environ.get(ENV_KEYS_FILE, "").strip():
        return KeyFile(Path(os.environ[ENV_KEYS_FILE]).expanduser())
    from imagesearch.stack.local import StackError, default_runtime_dir, find_repo_root

    try:
        return KeyFile(default_runtime_dir(find_repo_root()) / KEYS_FILE)
    except StackError:
        raise CliError(f"no key file given: pass --file or set {ENV_KEYS_FILE}") from None


def _last_used(args: argparse.Namespace, store: KeyFile) -> tuple[dict[str, float], str]:
    """(key id -> last use, "" or why it is unknown); to the minute, best effort (docs/security.md)."""
    url = args.redis or os.environ.get("REDIS_URL", "").strip()
    local = store.path.parent / REDIS_URL_FILE
    if not url and local.is_file():
        url = local.read_text(encoding="utf-8").strip()
    if not url:
        return {}, "?"
    try:
        return read_last_used(url, args.namespace), ""
    except Exception as err:  # noqa: BLE001 - any Redis failure only hides this column
        print(
            f"last use unknown: Redis at {without_password(url)} did not answer ({type(err).__name__})", file=sys.stderr
        )
        return {}, "?"


def _when(stamp: float | None) -> str:
    return "" if stamp is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def run(args: argparse.Namespace) -> int:
    store = _key_file(args)
    try:
        if args.action == "create":
            ring = store.load_or_empty()
            try:
                record, token = new_key(
                    [Scope(s) for s in args.scope],
                    args.catalog,
                    name=args.name,
                    rate_per_second=args.rate,
                    existing=ring.keys,
                )
            except (ValueError, DomainError) as err:  # no scope or catalog, or a bad catalog name
                raise CliError(getattr(err, "message", str(err))) from None
            store.save([*ring.keys.values(), record])
            print(token)
            print(
                f"key {record.id} ({', '.join(sorted(record.scopes))} on {', '.join(record.catalog_names)}) "
                f"added to {store.path}; this is the only time it is shown",
                file=sys.stderr,
            )
        elif args.action == "list":
            ring = store.load()
            used, unknown = _last_used(args, store)
            rows = [
                [
                    k.id,
                    k.name,
                    ",".join(sorted(k.scopes)),
                    ",".join(k.catalog_names),
                    "" if k.rate_per_second is None else f"{k.rate_per_second:g}/s",
                    _when(k.created),
                    unknown or _when(used.get(k.id)) or "never",
                    f"revoked {_when(k.revoked)}" if k.revoked is not None else "active",
                ]
                for k in sorted(ring.keys.values(), key=lambda k: k.created)
            ]
            print(format_table(["id", "name", "scopes", "catalogs", "rate", "created", "last used", "state"], rows))
        else:
            key = store.revoke(args.key_id)
            print(f"revoked {key.id} ({key.name or 'unnamed'}); gateways stop accepting it at their next reload")
    except KeyFileError as err:
        raise CliError(str(err)) from None
    return 0
