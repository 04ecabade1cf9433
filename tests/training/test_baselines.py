from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from training.baselines import ease, ials, itemknn, markov, popularity, scores
from training.baselines.interface import (
    NotApplicable,
    TrainData,
    history_matrix,
    parse_params,
)
from training.dataset import History


def make_history(items: list[int], item_scores: list[int] | None = None) -> History:
    n = len(items)
    return History(
        np.asarray(items, dtype=np.int32),
        np.asarray(item_scores if item_scores is not None else [0] * n, dtype=np.int8),
        np.ones(n, dtype=np.int8),
        np.zeros(n, dtype=np.int16),
        np.arange(n, dtype=np.int32),
    )


def train_data(histories: list[History], n_items: int, has_times: bool = True) -> TrainData:
    return TrainData(history_matrix(histories, n_items), histories, n_items, has_times)


def random_histories(rng: np.random.Generator, n_users: int, n_items: int) -> list[History]:
    return [
        make_history(sorted(rng.choice(n_items, size=rng.integers(2, n_items), replace=False)))
        for _ in range(n_users)
    ]


def test_history_matrix_is_binary_even_for_repeated_items() -> None:
    matrix = history_matrix([make_history([2, 0, 2]), make_history([])], 4)
    assert matrix.toarray().tolist() == [[1, 0, 1, 0], [0, 0, 0, 0]]


def test_popularity_counts_interactions_of_the_training_part() -> None:
    model = popularity.make(None)
    model.fit(train_data([make_history([0, 1]), make_history([1, 2]), make_history([1])], 4))
    out = model.score(np.array([0, 1]), [make_history([]), make_history([3])])
    assert out.dtype == np.float32
    assert out.tolist() == [[1, 3, 1, 0], [1, 3, 1, 0]]


def test_ease_matches_the_direct_formula() -> None:
    rng = np.random.default_rng(1)
    histories = random_histories(rng, 12, 6)
    data = train_data(histories, 6)
    model = ease.make("5")
    model.fit(data)
    x = data.matrix.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 5.0 * np.eye(6))
    b = np.eye(6) - p @ np.diag(1.0 / np.diag(p))
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(model.weights, b, atol=1e-5)
    query = make_history([0, 3])
    np.testing.assert_allclose(model.score(np.array([0]), [query])[0], b[0] + b[3], atol=1e-5)


def test_markov_scores_last_three_items_with_halving_weights() -> None:
    # Planted chain 0 → 1 → 2 → 3 in every training sequence, plus 0 → 4 once.
    histories = [make_history([0, 1, 2, 3]) for _ in range(5)] + [make_history([0, 4])]
    model = markov.make(None)
    model.fit(train_data(histories, 5))
    out = model.score(np.array([0, 1]), [make_history([0]), make_history([4, 0, 1, 2])])
    assert out[0].tolist() == [0, 5, 0, 0, 1]
    # Last item 2 (→3 ×5, weight 1), then 1 (→2 ×5, ½), then 0 (→1 ×5, →4 ×1, ¼).
    assert out[1].tolist() == pytest.approx([0, 1.25, 2.5, 5, 0.25])
    assert np.argmax(out[0]) == 1


def test_markov_refuses_data_without_times() -> None:
    with pytest.raises(NotApplicable):
        markov.make(None).fit(train_data([make_history([0, 1])], 2, has_times=False))


def test_itemknn_keeps_the_k_most_cosine_similar_items() -> None:
    rng = np.random.default_rng(2)
    data = train_data(random_histories(rng, 15, 7), 7)
    x = data.matrix.toarray()
    norms = np.linalg.norm(x, axis=0)
    cosine = (x.T @ x) / np.outer(norms, norms)
    np.fill_diagonal(cosine, 0.0)
    full = itemknn.cosine_top_k(data.matrix, 6).toarray()
    np.testing.assert_allclose(full, cosine, atol=1e-6)
    nearest = itemknn.cosine_top_k(data.matrix, 1).toarray()
    assert ((nearest > 0).sum(axis=1) <= 1).all()
    np.testing.assert_allclose(nearest.max(axis=1), cosine.max(axis=1), atol=1e-6)
    model = itemknn.make("6")
    model.fit(data)
    np.testing.assert_allclose(
        model.score(np.array([0]), [make_history([1, 4])])[0], cosine[1] + cosine[4], atol=1e-5
    )


def block_histories() -> list[History]:
    # Two taste groups with disjoint items: 0–4 and 5–9.
    rng = np.random.default_rng(3)
    histories = []
    for user in range(40):
        base = 0 if user % 2 == 0 else 5
        chosen = rng.choice(5, size=3, replace=False) + base
        histories.append(make_history(sorted(chosen.tolist())))
    return histories


def test_ials_ranks_the_users_own_group_first_and_is_deterministic() -> None:
    data = train_data(block_histories(), 10)
    first = ials.make("factors=4+alpha=10+reg=0.1+iterations=8")
    first.fit(data)
    query = [make_history([0, 1]), make_history([6, 7])]
    out = first.score(np.array([0, 1]), query)
    assert out[0, 2:5].min() > out[0, 5:].max()
    assert out[1, [5, 8, 9]].min() > out[1, :5].max()
    second = ials.make("factors=4+alpha=10+reg=0.1+iterations=8")
    second.fit(data)
    np.testing.assert_array_equal(out, second.score(np.array([0, 1]), query))


def planted_ratings() -> tuple[list[History], np.ndarray, np.ndarray]:
    user_bias = np.tile([-1, 0, 1], 20)  # 60 users
    item_bias = np.array([-2, -1, 0, 1, 2, 0, 1, -1])
    histories = []
    for bu in user_bias:
        ratings = (6 + bu + item_bias).tolist()
        histories.append(make_history(list(range(8)), ratings))
    return histories, user_bias, item_bias


def test_bias_model_recovers_planted_biases() -> None:
    histories, _, item_bias = planted_ratings()
    model = scores.make_bias("0.01")
    model.fit(train_data(histories, 8))
    centred = model.item_bias - model.item_bias.mean()
    np.testing.assert_allclose(centred, item_bias - item_bias.mean(), atol=0.02)
    # Fold-in from a history: a user who rates 3 items 1 above average gets b_u ≈ +1.
    query = make_history([0, 1, 2], (7 + item_bias[:3]).tolist())
    predicted = model.predict(np.array([0, 0]), np.array([3, 4]), [query, query])
    np.testing.assert_allclose(predicted, 7 + item_bias[3:5], atol=0.05)


def test_biased_mf_beats_bias_on_interacting_tastes() -> None:
    rng = np.random.default_rng(4)
    taste = rng.choice([-1.0, 1.0], size=80)
    style = rng.choice([-1.0, 1.0], size=12)
    histories, held_users, held_items, held_scores = [], [], [], []
    for user in range(80):
        ratings = np.clip(np.rint(6 + 2 * taste[user] * style), 1, 10).astype(int)
        held = rng.choice(12, size=2, replace=False)
        kept = [i for i in range(12) if i not in held]
        histories.append(make_history(kept, ratings[kept].tolist()))
        for item in held:
            held_users.append(user)
            held_items.append(item)
            held_scores.append(ratings[item])
    data = train_data(histories, 12)
    users, items = np.array(held_users), np.array(held_items)
    pair_histories = [histories[u] for u in held_users]
    errors = {}
    for name, model in (("bias", scores.make_bias("1")), ("mf", scores.make_mf("factors=2"))):
        model.fit(data)
        predicted = model.predict(users, items, pair_histories)
        assert predicted.min() >= 1 and predicted.max() <= 10
        errors[name] = float(np.sqrt(np.mean((predicted - np.array(held_scores)) ** 2)))
    assert errors["mf"] < 0.5 * errors["bias"]


def test_parse_params() -> None:
    assert parse_params(None, "k") == {}
    assert parse_params("50", "k") == {"k": "50"}
    assert parse_params("factors=8+alpha=2", "factors") == {"factors": "8", "alpha": "2"}
    with pytest.raises(ValueError):
        parse_params("alpha=", "k")
    with pytest.raises(ValueError, match="unknown parameter"):
        ease.make("lambda=3+bogus=1")
    with pytest.raises(ValueError, match="must be a number"):
        ease.make("abc")


def test_models_do_not_depend_on_the_user_ids_they_are_given() -> None:
    data = train_data(block_histories(), 10)
    model = ease.make("1")
    model.fit(data)
    query = [make_history([0, 1])]
    np.testing.assert_array_equal(
        model.score(np.array([0]), query), model.score(np.array([7]), query)
    )
    assert isinstance(data.matrix, sp.csr_matrix)
