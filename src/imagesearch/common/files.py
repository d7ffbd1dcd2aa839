"""Small file rules several parts share: noticing that a file was replaced, writing a private one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def stamp(*paths: Path) -> tuple[int, ...] | None:
    """Identity, modification time and size of each file: changes when any is rewritten or replaced
    (a renamed-over file has another inode); None while one of them is missing."""
    stamps: list[int] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            return None
        stamps += [st.st_ino, st.st_mtime_ns, st.st_size]
    return tuple(stamps)


def write_private(path: Path, text: str) -> None:
    """Write `text` readable by its owner only (0600), atomically: a reader sees the old file or the
    new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
