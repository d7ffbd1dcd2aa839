"""The metrics, exactly as the dataset README defines them.

`rank` is 1 + the number of indexed items scoring strictly higher than the
ground-truth product. The gateway's answer is not always in score order (the
category-aware ranking and the whole-photo hedge reorder it), so the rank is
the position the caller sees: 1 + the hits listed before the product, except
those with exactly its score (ties resolved in its favour, as strictly higher
does). For a list in score order that is the README's definition exactly.
Through the public API we see the top `depth` products,
so a product beyond them has an unknown rank: it counts as a miss for every
Recall@k (k <= depth) and contributes 0 to MRR, which makes the reported MRR
a lower bound by at most (misses / (depth + 1)) / queries; the report states
how many queries fell beyond the depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median


@dataclass(frozen=True)
class QueryOutcome:
    query_id: str
    product_id: str
    # (product_id, score, category) of the hits, best first.
    hits: list[tuple[str, float, str]]
    latency_ms: float
    predicted_category: str = ""

    def rank(self) -> int | None:
        """1-based position of the ground truth among the hits (ties resolved in its favour), None if absent."""
        for position, (pid, score, _) in enumerate(self.hits):
            if pid == self.product_id:
                return 1 + sum(1 for _, other, _ in self.hits[:position] if other != score)
        return None


@dataclass(frozen=True)
class Report:
    queries: int
    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    mrr: float
    category_precision_at_10: float
    beyond_depth: int
    category_prediction_accuracy: float
    latency_p50_ms: float
    latency_p95_ms: float


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def evaluate_by_group(
    outcomes: Sequence[QueryOutcome], categories: dict[str, str], groups: dict[str, str]
) -> dict[str, Report]:
    """One report per group (query_id -> group name, e.g. the kind of variation), in name order;
    queries without a group are left out, and no groups give no reports."""
    members: dict[str, list[QueryOutcome]] = {}
    for o in outcomes:
        if groups.get(o.query_id):
            members.setdefault(groups[o.query_id], []).append(o)
    return {name: evaluate(members[name], categories) for name in sorted(members)}


def evaluate(outcomes: Sequence[QueryOutcome], categories: dict[str, str]) -> Report:
    ranks = [o.rank() for o in outcomes]
    n = len(outcomes)

    def recall(k: int) -> float:
        return sum(1 for r in ranks if r is not None and r <= k) / n

    precision = [
        sum(1 for _, _, category in o.hits[:10] if category == categories.get(o.product_id)) / 10 for o in outcomes
    ]
    latencies = [o.latency_ms for o in outcomes]
    return Report(
        queries=n,
        recall_at_1=recall(1),
        recall_at_5=recall(5),
        recall_at_10=recall(10),
        mrr=sum(1 / r for r in ranks if r is not None) / n,
        category_precision_at_10=sum(precision) / n,
        beyond_depth=sum(1 for r in ranks if r is None),
        category_prediction_accuracy=sum(
            1 for o in outcomes if o.predicted_category and o.predicted_category == categories.get(o.product_id)
        )
        / n,
        latency_p50_ms=median(latencies),
        latency_p95_ms=percentile(latencies, 0.95),
    )
