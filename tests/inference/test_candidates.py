import numpy as np

from inference.encoding import (
    LIST_RELATIVE,
    N_ABSOLUTE_FEATURES,
    RANKER_FEATURES,
    Entries,
    ItemFacts,
    ranker_features,
    score_features,
    select_candidates,
)


def facts_with(items: np.ndarray, weights: np.ndarray, n_items: int) -> ItemFacts:
    return ItemFacts(
        log_popularity=np.zeros(n_items, dtype=np.float32),
        franchise=np.full(n_items, -1, dtype=np.int64),
        genres=np.zeros((n_items, 0), dtype=np.float32),
        neighbour_items=items,
        neighbour_weights=weights,
    )


def listing(items: list[int], scores: list[int] | None = None, statuses=None) -> Entries:
    n = len(items)
    return Entries(
        np.array(items, dtype=np.int32),
        np.array(scores or [0] * n, dtype=np.int8),
        np.array(statuses or [1] * n, dtype=np.int8),
        np.zeros(n, dtype=np.int16),
        np.zeros(n, dtype=np.int32),
    )


def test_candidates_join_the_best_by_logit_and_by_neighbour_score():
    n = 10
    # Item 0 points strongly at 9, item 1 at 8; the logits prefer 2 and 3.
    items = np.array([[9, 4], [8, 4]] + [[0, 1]] * (n - 2), dtype=np.int32)
    weights = np.array([[1.0, 0.1], [0.5, 0.1]] + [[0.0, 0.0]] * (n - 2), dtype=np.float32)
    facts = facts_with(items, weights, n)
    logits = -np.arange(n, dtype=np.float64)  # 0 best, then 1, 2, ...
    history = listing([0, 1, 5], statuses=[1, 1, 4])  # 5 is plan-to-watch
    picked = select_candidates(history, logits, facts, 2)
    assert picked.items.tolist() == [2, 3, 9, 8]  # by logit first, then new ones by neighbours
    assert picked.ranks.tolist() == [0, 1, 6, 5]
    np.testing.assert_allclose(picked.neighbour_scores, [0.0, 0.0, 1.0, 0.5])
    assert picked.neighbour_ranks[2:].tolist() == [0, 1]
    # Serving adds the plan-to-watch entry with the ranks it would take among the unseen.
    served = select_candidates(history, logits, facts, 2, include_planned=True)
    assert served.items.tolist() == [2, 3, 9, 8, 5]
    assert served.ranks[-1] == 3  # among the unseen, after 2, 3 and 4 (logits 0, -1... -4)


def test_without_neighbours_candidates_are_the_logit_top():
    n = 8
    facts = facts_with(np.zeros((n, 0), np.int32), np.zeros((n, 0), np.float32), n)
    picked = select_candidates(listing([0]), -np.arange(n, dtype=np.float64), facts, 3)
    assert picked.items.tolist() == [1, 2, 3]
    assert (picked.neighbour_scores == 0).all()


def test_the_neighbour_deviation_follows_what_the_user_scored_above_their_mean():
    n = 6
    # Items 0 and 1 both point at 4 and 5: 0 strongly at 4, 1 strongly at 5.
    items = np.array([[4, 5], [5, 4]] + [[0, 1]] * (n - 2), dtype=np.int32)
    weights = np.array([[1.0, 0.1], [1.0, 0.1]] + [[0.0, 0.0]] * (n - 2), dtype=np.float32)
    facts = ItemFacts(
        log_popularity=np.zeros(n, dtype=np.float32),
        franchise=np.full(n, -1, dtype=np.int64),
        genres=np.zeros((n, 0), dtype=np.float32),
        neighbour_items=items,
        neighbour_weights=weights,
        mean_score=np.array([0, 0, 0, 0, 8.0, 0], dtype=np.float32),
        score_count=np.array([0, 0, 0, 0, 3, 0], dtype=np.float32),
    )
    history = listing([0, 1], scores=[10, 4])  # loved 0, disliked 1: mean 7
    out = score_features(history, np.array([4, 5]), np.array([7.0, 7.0]), facts)
    deviation = out[:, 5]
    assert deviation[0] > 0 > deviation[1]  # 4 is 0's neighbour, 5 is 1's
    assert out[0, 1] == 0.0 and out[0, 3] == 0.5 and out[1, 3] == 0.0  # list mean 7, item mean 8


def test_transitions_weigh_the_newest_three_entries_and_join_the_candidates():
    n = 8
    empty = np.zeros((n, 0), np.int32)
    # Each item i is most often followed by i + 1 (count 4); item 0 also by 7 (count 1).
    t_items = np.array([[(i + 1) % n, 7] for i in range(n)], dtype=np.int32)
    t_counts = np.array([[4.0, 1.0 if i == 0 else 0.0] for i in range(n)], dtype=np.float32)
    facts = ItemFacts(
        log_popularity=np.zeros(n, dtype=np.float32),
        franchise=np.full(n, -1, dtype=np.int64),
        genres=np.zeros((n, 0), dtype=np.float32),
        neighbour_items=empty,
        neighbour_weights=empty.astype(np.float32),
        transition_items=t_items,
        transition_counts=t_counts,
    )
    history = listing([0, 1, 2, 3])  # oldest first: 3 is the newest, then 2, then 1; 0 is too old
    scores = facts.transition_scores(history.items)
    np.testing.assert_allclose(scores[[4, 3, 2, 7]], np.log1p([4.0, 2.0, 1.0, 0.0]))
    logits = np.zeros(n)
    logits[5] = 1.0  # the transformer prefers 5
    picked = select_candidates(history, logits, facts, 1)
    assert picked.items.tolist() == [5, 4]  # by logit, then by transition
    assert picked.transition_ranks.tolist() == [1, 0]  # 5 ties the rest at 0 (4 is first)


def _features(history: Entries, logits: np.ndarray, facts: ItemFacts, n: int) -> np.ndarray:
    picked = select_candidates(history, logits, facts, n)
    k = len(picked.items)
    return ranker_features(history, picked, np.full(k, 7.0), np.full(k, 0.1), facts)


def test_list_relative_features_standardise_each_graded_column_over_the_candidates():
    rng = np.random.default_rng(0)
    n, k = 40, 5
    facts = facts_with(
        rng.integers(0, n, (n, k)).astype(np.int32), rng.normal(size=(n, k)).astype(np.float32), n
    )
    facts = ItemFacts(
        log_popularity=rng.random(n).astype(np.float32),
        franchise=facts.franchise,
        genres=facts.genres,
        neighbour_items=facts.neighbour_items,
        neighbour_weights=facts.neighbour_weights,
    )
    history = listing([0, 1, 2, 3])
    out = _features(history, rng.normal(size=n), facts, 8)
    assert out.shape[1] == len(RANKER_FEATURES) == N_ABSOLUTE_FEATURES + len(LIST_RELATIVE)
    for offset, name in enumerate(LIST_RELATIVE):
        absolute = out[:, RANKER_FEATURES.index(name)].astype(np.float64)
        relative = out[:, N_ABSOLUTE_FEATURES + offset]
        if absolute.std() > 1e-6:
            np.testing.assert_allclose(
                relative, (absolute - absolute.mean()) / absolute.std(), atol=1e-5
            )
        else:  # score and drop are constant here, and there are no transitions: 0, not NaN
            assert (relative == 0).all(), name


def test_list_relative_features_ignore_a_lists_own_scale():
    """Logits shifted and a model twice as peaked, neighbour weights twice as large: the absolute
    columns move, the list-relative ones (what the ranker compares across lists) do not."""
    rng = np.random.default_rng(1)
    n, k = 30, 4
    items = rng.integers(0, n, (n, k)).astype(np.int32)
    weights = rng.random((n, k)).astype(np.float32)
    history = listing([0, 1, 2])
    logits = rng.normal(size=n)
    # Twice the logits: ranks and order stay, log-probabilities are not an affine map of the old,
    # so compare the log-rank and neighbour columns, which are.
    one = _features(history, logits, facts_with(items, weights, n), 6)
    two = _features(history, 2.0 * logits + 5.0, facts_with(items, 2.0 * weights, n), 6)
    near = RANKER_FEATURES.index("neighbour_score")
    np.testing.assert_allclose(two[:, near], 2.0 * one[:, near], rtol=1e-5)
    for name in ("log_rank", "neighbour_score", "neighbour_log_rank"):
        column = N_ABSOLUTE_FEATURES + LIST_RELATIVE.index(name)
        np.testing.assert_allclose(two[:, column], one[:, column], atol=1e-5)
