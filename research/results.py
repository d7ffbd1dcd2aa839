"""Append experiment results to research/results.jsonl and render the markdown table (not part of the product)."""

import json
import sys
from pathlib import Path

RES = Path(__file__).resolve().parent / "results.jsonl"
# Measured single-query model latency (batch 1, torch CPU, 2 threads) per input size; see timing.py.
MS_PER_EVAL = {224: None, 256: None, 288: None}


def evals(*sizes):
    """query cost in model evaluations at 224 px (FLOPs scale with pixel count)."""
    return round(sum((s / 224) ** 2 for s in sizes), 2)


def record(group, name, m, cost, ms=None, note="", extra=None):
    row = {
        "group": group,
        "name": name,
        **{k: round(m[k], 4) for k in ("R@1", "R@5", "R@10", "MRR", "P@10")},
        "n": m["n"],
        "evals": cost,
        "ms": ms,
        "note": note,
    }
    if extra:
        row.update(extra)
    with open(RES, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(
        f"{group:10s} {name:55s} R@1 {m['R@1']:.3f} R@5 {m['R@5']:.3f} R@10 {m['R@10']:.3f} "
        f"MRR {m['MRR']:.3f} P@10 {m['P@10']:.3f} n={m['n']} evals={cost} {note}"
    )


def table(group=None):
    with open(RES) as handle:
        rows = [json.loads(line) for line in handle]
    seen = {}
    for r in rows:  # last result wins for a (group, name)
        seen[(r["group"], r["name"])] = r
    out = [
        "| group | variant | R@1 | R@5 | R@10 | MRR | P@10 | n | query cost (evals @224) | ms/query |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (g, n), r in seen.items():
        if group and g != group:
            continue
        ms = "" if r.get("ms") is None else f"{r['ms']:.0f}"
        out.append(
            f"| {g} | {n} | {r['R@1']:.3f} | {r['R@5']:.3f} | {r['R@10']:.3f} | {r['MRR']:.3f} | "
            f"{r['P@10']:.3f} | {r['n']} | {r['evals']} | {ms} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    print(table(sys.argv[1] if len(sys.argv) > 1 else None))
