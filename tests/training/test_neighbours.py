import numpy as np
import scipy.sparse as sp

from tests.inference.test_candidates import facts_with
from training.baselines.ease import ease_weights
from training.neighbours import fit_neighbours


def random_matrix(n_users: int = 60, n_items: int = 12, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < 0.3).astype(np.float32))


def test_every_neighbour_kept_gives_the_dense_ease_scores():
    matrix = random_matrix()
    n = matrix.shape[1]
    dense = ease_weights((matrix.T @ matrix).toarray().astype(np.float64), 5.0)
    items, weights = fit_neighbours(matrix, 5.0, k=n - 1)
    facts = facts_with(items, weights, n)
    seen = np.array([0, 3, 7])
    np.testing.assert_allclose(facts.neighbour_scores(seen), dense[seen].sum(axis=0), atol=1e-5)


def test_a_short_row_keeps_the_strongest_weights_by_magnitude():
    matrix = random_matrix(seed=1)
    n = matrix.shape[1]
    dense = ease_weights((matrix.T @ matrix).toarray().astype(np.float64), 5.0)
    items, weights = fit_neighbours(matrix, 5.0, k=3)
    assert items.shape == weights.shape == (n, 3)
    for row in range(n):
        strongest = np.sort(np.abs(dense[row]))[-3:]
        np.testing.assert_allclose(np.sort(np.abs(weights[row])), strongest, rtol=1e-5)
        np.testing.assert_allclose(weights[row], dense[row, items[row]], rtol=1e-5)


def test_transitions_count_consecutive_pairs_within_each_user_only():
    from training.neighbours import top_transitions

    users = np.array([0, 0, 0, 0, 1, 1, 2])
    items = np.array([1, 2, 1, 2, 3, 1, 2])  # 1→2 twice, 2→1 once, 3→1 once; 2→3 crosses users
    top_items, counts = top_transitions(users, items, n_items=4, k=2)
    assert top_items.shape == counts.shape == (4, 2)
    assert (top_items[1, 0], counts[1, 0]) == (2, 2.0)
    assert (top_items[2, 0], counts[2, 0]) == (1, 1.0) and counts[2, 1] == 0.0
    assert (top_items[3, 0], counts[3, 0]) == (1, 1.0)
    assert counts[0].sum() == 0 and counts[:, :].sum() == 4.0  # the cross-user 1→3, 2→2 are not


def test_items_nobody_has_get_zero_weights_and_leave_the_others_as_a_full_solve():
    """Catalogue titles without interactions are solved out of EASE; the weights among the
    titles that occur must equal the textbook inverse over those titles alone."""
    import scipy.linalg

    matrix = random_matrix(seed=2).toarray()
    padded = np.zeros((matrix.shape[0], matrix.shape[1] + 3), dtype=np.float64)
    used = np.array([0, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 14])
    padded[:, used] = matrix
    weights = ease_weights(padded.T @ padded, 5.0)
    unused = np.setdiff1d(np.arange(padded.shape[1]), used)
    assert not weights[unused].any() and not weights[:, unused].any()
    precision = scipy.linalg.inv(matrix.T @ matrix + 5.0 * np.eye(matrix.shape[1]))
    expected = -precision / np.diag(precision)[np.newaxis, :]
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(weights[np.ix_(used, used)], expected, atol=1e-9)


def test_item_knn_neighbours_are_the_dense_cosines_best_first():
    from training.neighbours import fit_cooccurrence

    matrix = random_matrix(seed=2)
    gram = (matrix.T @ matrix).toarray().astype(np.float64)
    norms = np.sqrt(np.diag(gram))
    cosine = gram / np.outer(norms, norms)
    np.fill_diagonal(cosine, -1.0)
    # A block smaller than the item count covers the rows in several passes.
    items, weights = fit_cooccurrence(matrix, 4, block=5)
    assert items.shape == weights.shape == (matrix.shape[1], 4)
    for row in range(matrix.shape[1]):
        assert row not in items[row]
        np.testing.assert_allclose(weights[row], np.sort(cosine[row])[::-1][:4], rtol=1e-5)
        np.testing.assert_allclose(cosine[row, items[row]], weights[row], rtol=1e-5)


def test_an_item_without_interactions_has_zero_cosines():
    from training.neighbours import fit_cooccurrence

    matrix = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0]], dtype=np.float32))
    items, weights = fit_cooccurrence(matrix, 2)
    assert weights[2].tolist() == [0.0, 0.0]
    assert items[1, 0] == 0 and weights[1, 0] > 0
    empty_items, empty_weights = fit_cooccurrence(sp.csr_matrix((2, 1), dtype=np.float32), 5)
    assert empty_items.shape == empty_weights.shape == (1, 0)
