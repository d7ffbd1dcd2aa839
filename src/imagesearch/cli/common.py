"""What the `imagesearch` commands share: the --gateway option, error lines, text tables."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable, Sequence
from typing import TypeAlias

import grpc

from imagesearch.auth.local import ADMIN_KEY_FILE
from imagesearch.client.channel import DEFAULT_GATEWAY
from imagesearch.client.credentials import CredentialsError, api_key_from_env, read_key_file


def resolve_api_key() -> str | None:
    """The key the commands send: $IMAGESEARCH_API_KEY, $IMAGESEARCH_API_KEY_FILE, else the local
    stack's admin key (<repo>/var/admin.key, written by `imagesearch up`); None: none found."""
    try:
        key = api_key_from_env()
    except CredentialsError as err:
        raise CliError(str(err)) from None
    if key is not None:
        return key
    from imagesearch.stack.local import StackError, default_runtime_dir, find_repo_root  # only when no key was given

    try:
        local = default_runtime_dir(find_repo_root()) / ADMIN_KEY_FILE
    except StackError:
        return None
    return read_key_file(local) if local.is_file() else None


class CliError(Exception):
    """A failure to report as one `error: ...` line, without a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# The object `add_subparsers()` returns (generic only to the type checker, hence the string).
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_command(
    subparsers: Subparsers, name: str, *, help: str, description: str, epilog: str, gateway: bool = True
) -> argparse.ArgumentParser:
    """One `imagesearch <name>` command; its --help prints `description` and `epilog` as written
    (examples, environment), and `--gateway` works after the command name too."""
    return subparsers.add_parser(
        name,
        parents=[gateway_option()] if gateway else [],
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def gateway_option() -> argparse.ArgumentParser:
    """A parent parser so `--gateway` also works after the command name.

    SUPPRESS keeps the top-level value (or its default) when the command
    does not repeat the option.
    """
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--gateway",
        default=argparse.SUPPRESS,
        metavar="HOST:PORT",
        help=f"gateway address (default: $IMAGESEARCH_GATEWAY or {DEFAULT_GATEWAY})",
    )
    parent.add_argument("--ca", default=argparse.SUPPRESS, metavar="PEM", help=CA_HELP)
    return parent


CA_HELP = "speak TLS to the gateway, trusting this CA bundle (default: $IMAGESEARCH_CA_FILE; none: plaintext)"


def rpc_error_line(err: grpc.RpcError, gateway: str | None = None) -> str:
    """`CODE: details`, plus a hint when the gateway itself cannot be reached."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else "") or ""
    line = f"{code.name}: {details}" if details else code.name
    if code == grpc.StatusCode.UNAVAILABLE and gateway and "failed to connect" in details.lower():
        line += f" (is the gateway running at {gateway}? start a local stack with `imagesearch up`)"
    return line


def truncate(text: str, width: int, from_left: bool = False) -> str:
    """Cut `text` to `width` characters with an ellipsis (at the start for paths)."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width == 1:
        return "…"
    return "…" + text[-(width - 1) :] if from_left else text[: width - 1] + "…"


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    flexible: Sequence[int] = (),
    right_aligned: Sequence[int] = (),
    left_truncated: Sequence[int] = (),
    width: int | None = None,
) -> str:
    """A plain-text table that fits the terminal by shrinking the `flexible` columns.

    Plain text (no colour, no box drawing) so the output pastes cleanly into
    tickets and pipes cleanly into grep.
    """
    total = width or shutil.get_terminal_size((120, 24)).columns
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    gap = 2
    overflow = sum(widths) + gap * (len(widths) - 1) - total
    for i in sorted(flexible, key=lambda c: -widths[c]):
        if overflow <= 0:
            break
        cut = min(overflow, max(0, widths[i] - max(len(headers[i]), 12)))
        widths[i] -= cut
        overflow -= cut

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            text = truncate(cell, widths[i], from_left=i in left_truncated)
            out.append(text.rjust(widths[i]) if i in right_aligned else text.ljust(widths[i]))
        return (" " * gap).join(out).rstrip()

    rule = (" " * gap).join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def int_up_to(limit: int) -> Callable[[str], int]:
    """argparse type: a whole number from 1 to `limit`."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit}, got {value}")
        return value

    return parse
