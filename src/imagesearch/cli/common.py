"""What the `imagesearch` commands share: the gateway channel, error lines, text tables."""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import grpc

from imagesearch.v1 import search_pb2_grpc

DEFAULT_GATEWAY = "127.0.0.1:50051"
# Upsert batches carry raw images; the gateway's own cap decides, not ours.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# Codes worth another try: the gateway or one of its dependencies is briefly away.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED})


class CliError(Exception):
    """A failure to report as one `error: ...` line, without a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def default_gateway() -> str:
    return os.environ.get("IMAGESEARCH_GATEWAY", "").strip() or DEFAULT_GATEWAY


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
    return parent


def normalise_target(address: str) -> str:
    """Accept `host:port` as well as the `grpc://host:port` people paste from docs."""
    for prefix in ("grpc://", "http://", "dns:///"):
        if address.startswith(prefix):
            return address[len(prefix) :].rstrip("/")
    return address


def open_channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(
        normalise_target(address),
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )


def search_stub(channel: grpc.Channel) -> search_pb2_grpc.SearchServiceStub:
    return search_pb2_grpc.SearchServiceStub(channel)


def rpc_error_line(err: grpc.RpcError, gateway: str | None = None) -> str:
    """`CODE: details`, plus a hint when the gateway itself cannot be reached."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else "") or ""
    line = f"{code.name}: {details}" if details else code.name
    if code == grpc.StatusCode.UNAVAILABLE and gateway and "failed to connect" in details.lower():
        line += f" (is the gateway running at {gateway}? start a local stack with `imagesearch up`)"
    return line


def display_path(path: str | Path) -> str:
    """A path relative to the working directory when it lies below it, else as given."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


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
