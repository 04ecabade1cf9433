from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.rerank import (
    ItemSimilarity,
    adventure_utilities,
    catalogue_coverage,
    dpp,
    franchise_duplicates,
    intra_list_diversity,
    mmr,
    rerank,
    select,
)


def _random_case(seed: int, m: int = 14, d: int = 5, genres: int = 6):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(m, d))
    genre_sets = rng.random((m, genres)) < 0.4
    utilities = rng.normal(size=m) * 3 + 10  # an arbitrary scale: both methods rescale
    return emb, genre_sets, utilities


def _brute_force_greedy_dpp(
    utilities: np.ndarray, sim: np.ndarray, count: int, theta: float, franchises=None
) -> list[int]:
    """Greedy MAP by recomputing log det L_Y for every candidate at every step."""
    rel = (utilities - utilities.min()) / (utilities.max() - utilities.min())
    r = np.exp(theta / (2 * (1 - theta)) * rel)
    kernel = r[:, None] * sim * r[None, :]
    chosen: list[int] = []
    for _ in range(count):
        best, best_logdet = None, -np.inf
        for i in range(len(utilities)):
            if i in chosen:
                continue
            if franchises is not None and franchises[i] in {franchises[c] for c in chosen}:
                continue
            ys = [*chosen, i]
            sign, logdet = np.linalg.slogdet(kernel[np.ix_(ys, ys)])
            if sign > 0 and logdet > best_logdet:
                best, best_logdet = i, logdet
        if best is None:
            break
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("theta", [0.2, 0.5, 0.8])
def test_fast_greedy_dpp_matches_brute_force_log_det(seed: int, theta: float) -> None:
    emb, genre_sets, utilities = _random_case(seed)
    similarity = ItemSimilarity(emb, genre_sets, genre_weight=0.3)
    picks = dpp(utilities, similarity, 5, theta=theta)
    assert picks.tolist() == _brute_force_greedy_dpp(utilities, similarity.matrix(), 5, theta)


@pytest.mark.parametrize("seed", range(4))
def test_dpp_with_franchises_matches_brute_force_under_the_same_constraint(seed: int) -> None:
    emb, _, utilities = _random_case(seed, m=12)
    franchises = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 5, 6])
    similarity = ItemSimilarity(emb)
    picks = dpp(utilities, similarity, 5, theta=0.6, franchises=franchises)
    expected = _brute_force_greedy_dpp(utilities, similarity.matrix(), 5, 0.6, franchises)
    assert picks.tolist() == expected


def test_mmr_trades_utility_for_novelty_as_the_formula_says() -> None:
    # Items 0 and 1 are near-duplicates with the best utilities; item 2 is different and a bit worse.
    emb = np.array([[1.0, 0.0], [0.99, 0.141], [0.0, 1.0], [0.7, 0.7]])
    utilities = np.array([1.0, 0.95, 0.8, 0.0])
    similarity = ItemSimilarity(emb)
    assert mmr(utilities, similarity, 2, lam=1.0).tolist() == [0, 1]
    # λ = 0.5: after item 0, item 1 gains 0.5·0.95 − 0.5·0.99 < 0, item 2 gains 0.5·0.8 − 0 > 0.
    assert mmr(utilities, similarity, 2, lam=0.5).tolist() == [0, 2]


@pytest.mark.parametrize("seed", range(5))
def test_mmr_at_lambda_one_is_the_utility_order(seed: int) -> None:
    emb, genre_sets, utilities = _random_case(seed)
    picks = mmr(utilities, ItemSimilarity(emb, genre_sets, 0.5), 8, lam=1.0)
    assert picks.tolist() == np.argsort(-utilities, kind="stable")[:8].tolist()


@settings(max_examples=40, deadline=None)
@given(
    franchises=st.lists(st.integers(-1, 4), min_size=1, max_size=20),
    count=st.integers(1, 10),
    seed=st.integers(0, 1000),
    method=st.sampled_from(["mmr", "dpp"]),
)
def test_at_most_one_pick_per_franchise(
    franchises: list[int], count: int, seed: int, method: str
) -> None:
    m = len(franchises)
    rng = np.random.default_rng(seed)
    similarity = ItemSimilarity(rng.normal(size=(m, 4)))
    picks = rerank(
        method,  # type: ignore[arg-type]
        rng.normal(size=m),
        similarity,
        count,
        tradeoff=0.5,
        franchises=np.array(franchises),
    )
    picked = [franchises[p] for p in picks]
    assert franchise_duplicates(picked) == 0
    assert len(set(picks.tolist())) == len(picks)
    # The list is as long as the constraint allows: -1 items are each their own franchise.
    groups = sum(1 for f in franchises if f == -1) + len({f for f in franchises if f != -1})
    assert len(picks) == min(count, groups)


@pytest.mark.parametrize("method", ["mmr", "dpp"])
def test_limited_items_are_capped(method: str) -> None:
    emb, _, _ = _random_case(3, m=10)
    utilities = np.arange(10, 0, -1, dtype=float)  # the limited ones (0..4) are the best
    limited = np.array([True] * 5 + [False] * 5)
    picks = rerank(
        method,  # type: ignore[arg-type]
        utilities,
        ItemSimilarity(emb),
        6,
        tradeoff=0.9,
        limited=limited,
        limit=2,
    )
    assert len(picks) == 6
    assert int(limited[picks].sum()) == 2


@pytest.mark.parametrize("method", ["mmr", "dpp"])
def test_reranking_is_deterministic(method: str) -> None:
    emb, genre_sets, utilities = _random_case(11, m=40)
    runs = [
        rerank(method, utilities, ItemSimilarity(emb, genre_sets, 0.2), 10).tolist()  # type: ignore[arg-type]
        for _ in range(3)
    ]
    assert runs[0] == runs[1] == runs[2]


def test_equal_utilities_go_to_the_earlier_candidate() -> None:
    emb = np.eye(4)
    assert mmr(np.ones(4), ItemSimilarity(emb), 4, lam=1.0).tolist() == [0, 1, 2, 3]
    assert dpp(np.ones(4), ItemSimilarity(emb), 4, theta=0.5).tolist() == [0, 1, 2, 3]


def test_dpp_fills_by_utility_once_the_kernel_is_exhausted() -> None:
    # Rank-1 similarity: after the first pick every other item is redundant under S.
    emb = np.ones((5, 3))
    utilities = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    assert dpp(utilities, ItemSimilarity(emb), 4, theta=0.5).tolist() == [1, 3, 2, 4]


def test_dpp_prefers_diverse_items_at_low_theta() -> None:
    emb = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    utilities = np.array([1.0, 0.9, 0.5])
    assert dpp(utilities, ItemSimilarity(emb), 2, theta=0.3).tolist() == [0, 2]
    assert dpp(utilities, ItemSimilarity(emb), 2, theta=0.99).tolist() == [0, 1]


def test_adventurous_knob_pushes_down_popular_items() -> None:
    utilities = np.array([1.0, 0.9, 0.1])
    popularity = np.array([1_000_000, 1_000, 10_000])
    assert np.argsort(-adventure_utilities(utilities, popularity, 0.0)).tolist() == [0, 1, 2]
    adjusted = adventure_utilities(utilities, popularity, 1.0)
    assert adjusted[1] > adjusted[0]  # the obscure one overtakes the blockbuster
    # Unknown popularity counts as average: it neither gains nor loses.
    unknown = adventure_utilities(utilities, np.array([1e6, np.nan, 1e3]), 1.0)
    assert unknown[1] == pytest.approx(adventure_utilities(utilities, popularity, 0.0)[1])


def test_similarity_blends_cosine_and_genre_jaccard() -> None:
    emb = np.array([[1.0, 0.0], [1.0, 1.0]])
    genres = np.array([[1, 1, 0], [0, 1, 1]], dtype=bool)
    sim = ItemSimilarity(emb, genres, genre_weight=0.25).matrix()
    cosine, jaccard = 1 / np.sqrt(2), 1 / 3
    assert sim[0, 1] == pytest.approx(0.75 * cosine + 0.25 * jaccard)
    assert np.allclose(np.diag(sim), 1.0)
    assert np.all(np.linalg.eigvalsh(ItemSimilarity(*_random_case(1)[:2], 0.4).matrix()) > -1e-9)


def test_diversity_metrics() -> None:
    sim = ItemSimilarity(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    assert intra_list_diversity(sim, [0, 1]) == pytest.approx(1.0)
    assert intra_list_diversity(sim, [0, 2]) == pytest.approx(0.0)
    assert intra_list_diversity(sim, [0, 1, 2]) == pytest.approx(2 / 3)
    assert intra_list_diversity(sim, [1]) == 0.0
    assert catalogue_coverage([[0, 1], [1, 2], []], 10) == pytest.approx(0.3)
    assert franchise_duplicates([5, 5, 7, -1, -1, 5]) == 2


def test_bad_inputs_are_refused_with_messages() -> None:
    sim = ItemSimilarity(np.eye(3))
    with pytest.raises(ValueError, match="theta"):
        dpp(np.ones(3), sim, 2, theta=1.0)
    with pytest.raises(ValueError, match="lam"):
        mmr(np.ones(3), sim, 2, lam=1.5)
    with pytest.raises(ValueError, match="one number per candidate"):
        mmr(np.ones(4), sim, 2)
    with pytest.raises(ValueError, match="finite"):
        dpp(np.array([1.0, np.nan, 0.0]), sim, 2)
    with pytest.raises(ValueError, match="unknown re-ranking method"):
        rerank("random", np.ones(3), sim, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one row per candidate"):
        ItemSimilarity(np.eye(3), np.ones((2, 2)), 0.5)


@pytest.mark.parametrize("method", ["mmr", "dpp"])
def test_select_over_the_vocabulary_keeps_every_rule(method: str) -> None:
    rng = np.random.default_rng(5)
    n = 300
    utilities = rng.normal(size=n)
    eligible = rng.random(n) < 0.6
    franchises = np.where(rng.random(n) < 0.3, -1, rng.integers(0, 60, size=n))
    planned = eligible & (rng.random(n) < 0.2)
    utilities[planned] += 3.0  # plan-to-watch items would fill the list without the cap
    picks = select(
        utilities,
        eligible,
        rng.normal(size=(n, 8)),
        franchises,
        10,
        popularity=rng.integers(1, 10**6, size=n),
        adventurous=0.5,
        limited=planned,
        limit=3,
        method=method,  # type: ignore[arg-type]
        n_candidates=50,
    )
    assert len(picks) == 10 and len(set(picks.tolist())) == 10
    assert eligible[picks].all()
    assert int(planned[picks].sum()) == 3
    assert franchise_duplicates(franchises[picks]) == 0
    # Only the 50 best eligible items were candidates.
    threshold = np.sort(utilities[eligible])[-50]
    assert (utilities[picks] >= threshold).all()


def test_select_at_full_utility_tradeoff_is_the_constrained_utility_order() -> None:
    utilities = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    eligible = np.array([True, False, True, True, True, True])
    franchises = np.array([7, -1, 7, -1, 8, 8])
    picks = select(utilities, eligible, np.eye(6), franchises, 3, method="mmr", tradeoff=1.0)
    assert picks.tolist() == [0, 3, 4]
