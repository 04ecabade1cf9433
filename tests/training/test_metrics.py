from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import (
    RankingAccumulator,
    graded_ndcg_at_k,
    ndcg_at_k,
    recall_at_k,
    rmse,
    roc_auc,
    top_k,
)

LOG3 = math.log2(3)


def test_top_k_orders_by_score_and_breaks_ties_by_lower_index() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 5.0, -np.inf]], np.float32)
    assert top_k(scores, 2).tolist() == [[1, 2], [3, 0]]
    assert top_k(scores, 4).tolist() == [[1, 2, 4, 3], [3, 0, 1, 2]]


def test_top_k_puts_masked_items_last_and_caps_k_at_the_item_count() -> None:
    scores = np.array([[-np.inf, 1.0, -np.inf]], np.float32)
    assert top_k(scores, 5).tolist() == [[1, 0, 2]]


def test_single_target_hit_rate_and_ndcg() -> None:
    ranked = np.array([5, 3, 7, 1])
    target = np.array([3])
    assert recall_at_k(ranked, target, 1) == 0.0
    assert recall_at_k(ranked, target, 2) == 1.0
    assert ndcg_at_k(ranked, target, 1) == 0.0
    assert ndcg_at_k(ranked, target, 10) == pytest.approx(1 / LOG3)
    assert ndcg_at_k(ranked, np.array([5]), 10) == pytest.approx(1.0)


def test_multi_target_ndcg_divides_by_ideal_of_min_k_and_held_out() -> None:
    ranked = np.array([0, 1, 2, 3])
    # Hits at ranks 2 and 4 of three held-out items, K = 4.
    value = ndcg_at_k(ranked, np.array([1, 3, 9]), 4)
    ideal = 1 + 1 / LOG3 + 1 / 2
    assert value == pytest.approx((1 / LOG3 + 1 / math.log2(5)) / ideal)
    # Five held-out items, K = 2, one hit at rank 1: the ideal has only two hits.
    value = ndcg_at_k(ranked, np.array([0, 5, 6, 7, 8]), 2)
    assert value == pytest.approx(1 / (1 + 1 / LOG3))


def test_recall_is_hits_over_min_k_and_held_out() -> None:
    ranked = np.array([0, 1, 2, 3])
    assert recall_at_k(ranked, np.array([1, 3, 9]), 4) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, np.array([0, 1, 5, 6, 7]), 2) == pytest.approx(1.0)
    assert recall_at_k(ranked, np.array([0, 5, 6, 7, 8]), 2) == pytest.approx(0.5)


def test_graded_ndcg_uses_exponential_gain() -> None:
    ranked = np.array([0, 1, 2])
    value = graded_ndcg_at_k(ranked, np.array([1, 2]), np.array([3, 1]), 3)
    dcg = 7 / LOG3 + 1 / 2
    ideal = 7 + 1 / LOG3
    assert value == pytest.approx(dcg / ideal)
    assert graded_ndcg_at_k(ranked, np.array([2, 1]), np.array([3, 1]), 3) == pytest.approx(
        (1 / LOG3 + 7 / 2) / ideal
    )


def test_graded_ndcg_is_undefined_when_every_gain_is_zero() -> None:
    assert graded_ndcg_at_k(np.array([0, 1]), np.array([1]), np.array([0]), 2) is None


def test_metrics_refuse_empty_targets() -> None:
    with pytest.raises(ValueError):
        ndcg_at_k(np.array([0]), np.array([], dtype=np.int64), 10)
    with pytest.raises(ValueError):
        recall_at_k(np.array([0]), np.array([], dtype=np.int64), 10)


def test_rmse() -> None:
    assert rmse(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(math.sqrt(2.5))
    with pytest.raises(ValueError):
        rmse(np.array([1.0]), np.array([]))


def test_accumulator_averages_and_leaves_ungraded_users_out_of_graded_mean() -> None:
    accumulator = RankingAccumulator([10, 20], single_target=False, graded=True)
    accumulator.add(np.arange(20), np.array([0]), np.array([4]))  # perfect
    accumulator.add(np.arange(20), np.array([30]), np.array([0]))  # miss, no gain
    means = accumulator.means()
    assert means["Recall@10"] == pytest.approx(0.5)
    assert means["NDCG@20"] == pytest.approx(0.5)
    assert means["NDCG@10-graded"] == pytest.approx(1.0)
    assert accumulator.n_graded_users == 1


def test_accumulator_names_hit_rate_for_single_targets() -> None:
    accumulator = RankingAccumulator([10], single_target=True, graded=False)
    accumulator.add(np.arange(10), np.array([3]), None)
    assert set(accumulator.means()) == {"HR@10", "NDCG@10"}
    with pytest.raises(ValueError):
        RankingAccumulator([10], single_target=True, graded=False).means()


def test_roc_auc_counts_pairs_and_ties_one_half() -> None:
    scores = np.array([0.9, 0.4, 0.4, 0.2, 0.7])
    labels = np.array([True, True, False, False, False])
    # Positive 0.9 beats all three negatives (3); positive 0.4 ties 0.4 (1/2), beats 0.2 (1) and
    # loses to 0.7 (0): 4.5 of 6 pairs.
    assert roc_auc(scores, labels) == pytest.approx(4.5 / 6)
    assert roc_auc(-scores, labels) == pytest.approx(1.5 / 6)
    assert roc_auc(np.array([3.0, 1.0, 2.0]), np.array([1, 0, 0])) == 1.0
    assert roc_auc(np.zeros(4), np.array([1, 0, 1, 0])) == 0.5  # one score for all: chance


def test_roc_auc_is_undefined_with_one_class_and_refuses_bad_input() -> None:
    assert roc_auc(np.array([0.1, 0.2]), np.array([False, False])) is None
    assert roc_auc(np.array([0.1, 0.2]), np.array([True, True])) is None
    assert roc_auc(np.zeros(0), np.zeros(0, dtype=bool)) is None
    with pytest.raises(ValueError):
        roc_auc(np.array([0.1, 0.2]), np.array([True]))
    with pytest.raises(ValueError):
        roc_auc(np.array([np.nan, 0.2]), np.array([True, False]))
