"""What every launcher of the local stack needs for its child processes."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Self

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


def spawn(
    command: Sequence[str], log: IO[bytes], cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A child of the local stack: its output to `log`, no stdin, a session of its own (a Ctrl-C in the
    terminal reaches only us, and we stop the children in order instead of all at once), and SIGTERM
    when we die (`die_with_parent`)."""
    return subprocess.Popen(
        list(command),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl(), async-signal-safe
    )


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


class Managed:
    """A part of the local stack with start() and stop(): `with Part(...) as part:` starts it, and stops
    it whatever happens inside."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def bound_port(part: object, port: int) -> int:
    """`port`, or RuntimeError when the part has not been started yet (its ports are picked at start)."""
    if not port:
        raise RuntimeError(f"{type(part).__name__} has no port until start()")
    return port
