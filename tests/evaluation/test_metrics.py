"""The evaluation metrics follow the dataset README's definitions."""

from __future__ import annotations

import pytest

from imagesearch.evaluation.metrics import QueryOutcome, evaluate, evaluate_by_group


def outcome(qid: str, truth: str, hits: list[tuple[str, float, str]]) -> QueryOutcome:
    return QueryOutcome(qid, truth, hits, latency_ms=10.0)


def test_rank_counts_only_strictly_higher_scores() -> None:
    tied = outcome("q", "b", [("a", 0.9, "x"), ("b", 0.9, "x"), ("c", 0.1, "x")])
    assert tied.rank() == 1
    assert outcome("q", "c", [("a", 0.9, "x"), ("b", 0.8, "x"), ("c", 0.1, "x")]).rank() == 3
    assert outcome("q", "z", [("a", 0.9, "x")]).rank() is None


def test_a_reordered_answer_is_ranked_where_the_caller_sees_it() -> None:
    # The category ranking or the whole-photo hedge may list a higher score below lower ones:
    # the product shown 3rd is 3rd, whatever its score.
    assert outcome("q", "c", [("a", 0.3, "x"), ("b", 0.2, "x"), ("c", 0.5, "x")]).rank() == 3


def test_recall_mrr_and_category_precision() -> None:
    categories = {"a": "fruit", "b": "fruit", "c": "tools", "d": "tools"}
    hits = [("a", 0.9, "fruit"), ("c", 0.8, "tools"), ("b", 0.7, "fruit")]
    report = evaluate(
        [outcome("q1", "a", hits), outcome("q2", "b", hits), outcome("q3", "d", hits)],
        categories,
    )
    assert report.recall_at_1 == pytest.approx(1 / 3)
    assert report.recall_at_5 == pytest.approx(2 / 3)
    assert report.mrr == pytest.approx((1 + 1 / 3) / 3)
    assert report.beyond_depth == 1
    # q1, q2 (fruit): 2 of the top 10 are fruit; q3 (tools): 1.
    assert report.category_precision_at_10 == pytest.approx((0.2 + 0.2 + 0.1) / 3)


def test_a_report_per_variation_in_name_order_leaving_out_queries_without_one() -> None:
    categories = {"a": "fruit", "b": "fruit"}
    hits = [("a", 0.9, "fruit"), ("b", 0.7, "fruit")]
    outcomes = [outcome("q1", "a", hits), outcome("q2", "b", hits), outcome("q3", "a", hits), outcome("q4", "b", hits)]
    groups = evaluate_by_group(outcomes, categories, {"q1": "small", "q2": "small", "q3": "clean", "q4": ""})
    assert list(groups) == ["clean", "small"]
    assert (groups["clean"].queries, groups["clean"].recall_at_1) == (1, 1.0)
    assert (groups["small"].queries, groups["small"].recall_at_1) == (2, 0.5)
    assert groups["small"].recall_at_10 == 1.0
    assert evaluate_by_group(outcomes, categories, {}) == {}
