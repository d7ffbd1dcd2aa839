"""What every launcher of the local stack needs for its child processes."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` for children of the local stack: SIGTERM them if we die.

    Without it a `kill -9` of `imagesearch up` (or of a test run) would leave
    servers holding ports and shared memory. Linux only; elsewhere a no-op.
    The signal fires when the *thread* that started the child exits, so start
    children from a thread that lives as long as they should (the main thread).
    """
    if os.uname().sysname != "Linux":
        return
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file, or "" when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
