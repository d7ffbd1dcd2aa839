"""What the benchmarks share: how a percentile of measured latencies is read, and waiting for
Milvus to index what a benchmark wrote before it is measured."""

from __future__ import annotations

import sys
import time
from typing import Any


def pct(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def wait_indexed(client: Any, name: str, rows: int, timeout: float = 120.0) -> None:
    """Seal the segments and wait until the vector index covers every row (the steady state)."""
    client.flush(name)
    deadline = time.monotonic() + timeout
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = client.describe_index(name, "embedding")
        if int(info.get("indexed_rows", 0)) >= rows and int(info.get("pending_index_rows", 0)) == 0:
            return
        time.sleep(0.5)
    print(f"warning: index covers {info.get('indexed_rows')} of {rows} rows after {timeout:.0f} s", file=sys.stderr)
