"""Predicting the query's category from its nearest catalog products.

A score-weighted vote of the nearest VOTERS products: cheap, model-free, and
it degrades gracefully (a miss still points at the right kind of product).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from imagesearch.common.types import Hit

VOTERS = 10


@dataclass(frozen=True)
class CategoryPrediction:
    category: str
    confidence: float  # the winner's share of the vote, in [0, 1]


def predict_category(neighbours: Sequence[Hit]) -> CategoryPrediction | None:
    """None when there is nothing to vote with (empty catalog, or no categories)."""
    votes: dict[str, float] = {}
    for hit in neighbours[:VOTERS]:
        if hit.category:
            # Scores are cosines, in practice in [0, 1]; a negative one carries no vote.
            votes[hit.category] = votes.get(hit.category, 0.0) + max(hit.score, 0.0)
    total = sum(votes.values())
    if total <= 0:
        return None
    # Ties go to the category whose best voter ranks first (dicts keep insertion order).
    category = max(votes, key=lambda c: votes[c])
    return CategoryPrediction(category, votes[category] / total)
