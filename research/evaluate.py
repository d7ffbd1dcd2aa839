#!/usr/bin/env python3
"""Exact cosine search in numpy over catalog + distractors, with the dev README's five metrics.

    python research/evaluate.py              # baseline: 224 crop avg (queries) vs 224 index, + ms/query

Library use (from the experiment scripts):
    scores = score_matrix(q, index_emb, owner)   # q: [Q,D] or [Q,C,D] (max over C crops)
    m = metrics(scores, meta)                    # dict R@1 R@5 R@10 MRR P@10 (+ per-query ranks)

Definitions (README "Evaluation protocol and metrics"):
  index = all 340 catalog + 1,155 distractor items; rank = 1 + #items scoring strictly higher than
  the ground truth; R@k = frac(rank <= k); MRR = mean(1/rank) over the full ranking;
  P@10 = frac of the top-10 items whose category == ground-truth product's category.
If an item is indexed with several images (e.g. the image and its mirror), the item's score is the
max over its images (the production system groups hits by product and keeps the best image).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_meta  # noqa: E402


def group_max(scores_rows: np.ndarray, owner: np.ndarray | None, n_items: int) -> np.ndarray:
    """[Q, rows] -> [Q, n_items] taking the max over rows of the same item."""
    if owner is None:
        assert scores_rows.shape[1] == n_items
        return scores_rows
    out = np.full((scores_rows.shape[0], n_items), -np.inf, dtype=scores_rows.dtype)
    # vectorised: sort rows by owner and reduceat
    order = np.argsort(owner, kind="stable")
    o = owner[order]
    starts = np.r_[0, np.nonzero(np.diff(o))[0] + 1]
    red = np.maximum.reduceat(scores_rows[:, order], starts, axis=1)
    out[:, o[starts]] = red
    return out


def score_matrix(q: np.ndarray, index_emb: np.ndarray, owner: np.ndarray | None = None, n_items: int = 1495,
                 crop_reduce: str = "max") -> np.ndarray:
    if q.ndim == 3:  # several crops per query
        s = np.einsum("qcd,md->qcm", q, index_emb)
        s = s.max(1) if crop_reduce == "max" else s.mean(1)
    else:
        s = q @ index_emb.T
    return group_max(s, owner, n_items)


def metrics(scores: np.ndarray, meta: dict, sel: np.ndarray | None = None) -> dict:
    gt = meta["q_gt"]
    cats = meta["cats"]
    if sel is not None:
        scores, gt = scores[sel], gt[sel]
    g = scores[np.arange(len(gt)), gt]
    rank = 1 + (scores > g[:, None]).sum(1)
    top10 = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    p10 = (cats[top10] == cats[gt][:, None]).mean(1)
    return {
        "R@1": float((rank <= 1).mean()), "R@5": float((rank <= 5).mean()), "R@10": float((rank <= 10).mean()),
        "MRR": float((1.0 / rank).mean()), "P@10": float(p10.mean()), "n": int(len(gt)), "ranks": rank,
    }


def fmt(m: dict) -> str:
    return " ".join(f"{k} {m[k]:.3f}" for k in ("R@1", "R@5", "R@10", "MRR", "P@10")) + f" (n={m['n']})"


if __name__ == "__main__":
    from common import DATA, cached, embed_arrays, open_rgb, resize, feature_maps
    meta = load_meta()
    idx = cached("index_224", lambda: embed_arrays([resize(open_rgb(DATA / r["image"]), 224, "pad") for r in meta["index"]]))
    # query side timed end to end (decode + resize + model + pooling), batch 1
    qf, t0 = [], time.perf_counter()
    for r in meta["queries"]:
        a = resize(open_rgb(DATA / r["image"]), 224, "crop")
        qf.append(feature_maps(a[None]).mean((2, 3)).numpy()[0])
    ms = (time.perf_counter() - t0) * 1000 / len(qf)
    q = np.array(qf)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    print("baseline 224 crop avg:", fmt(metrics(score_matrix(q, idx["avg"]), meta)), f"{ms:.1f} ms/query")
