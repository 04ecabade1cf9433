"""Pick N diverse items from scored candidates (docs/architecture.md#filters-and-re-ranking): MMR and fast greedy DPP.

Both pick greedily from the M candidates, and both keep two hard constraints: at most one item per
franchise, and at most `limit` items from the `limited` ones (plan-to-watch entries). Utilities are
rescaled to 0..1 over the candidates first, so λ and θ mean the same thing whatever the scale of
the ranker's scores.

- MMR (Carbonell & Goldstein 1998): next = argmax λ·u_i − (1−λ)·max_{j picked} sim(i, j).
- Fast greedy DPP MAP (Chen, Zhang & Zhou, NeurIPS 2018): kernel L = Diag(r)·S·Diag(r) with
  r_i = exp(α·u_i), α = θ / (2(1−θ)); greedily maximizing log det L_Y is then maximizing
  θ·Σ u + (1−θ)·log det S_Y. The Cholesky factor of L_Y grows one row per pick, so each step costs
  O(M·|Y|) plus one kernel row (O(M·d)): O(N²M + NMd) in all, never an M×M matrix.

The familiar <-> adventurous knob works before either: `adventure_utilities` standardizes the
utilities and the log popularity over the candidates and returns z(u) − adventurous·z(log(1+pop)),
so at 1 a title one standard deviation more popular than the others needs one standard deviation
more predicted utility to keep its place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from inference.order import best_first

Method = Literal["mmr", "dpp"]
NO_FRANCHISE = -1


class ItemSimilarity:
    """Similarity between candidates: cosine of item embeddings, optionally blended with the
    Jaccard similarity of their genre sets: (1−w)·cos + w·jaccard.

    Both parts are positive semi-definite kernels (the Jaccard/Tanimoto kernel is), so the blend is
    a valid DPP kernel. A candidate with an all-zero embedding is similar to nothing by cosine.
    Rows are computed on demand; `matrix` builds the whole M×M matrix (tests, metrics).
    """

    def __init__(
        self,
        embeddings: np.ndarray | None,
        genres: np.ndarray | None = None,
        genre_weight: float = 0.0,
    ) -> None:
        if embeddings is None and genres is None:
            raise ValueError("similarity needs item embeddings, genres, or both")
        if not 0.0 <= genre_weight <= 1.0:
            raise ValueError(f"genre_weight must be in [0, 1], not {genre_weight}")
        if embeddings is None:
            genre_weight = 1.0
        if genres is None:
            genre_weight = 0.0
        self.genre_weight = float(genre_weight)
        self._emb: np.ndarray | None = None
        if embeddings is not None:
            emb = np.asarray(embeddings, dtype=np.float64)
            norms = np.linalg.norm(emb, axis=1, keepdims=True)
            self._emb = np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)
        self._genres: np.ndarray | None = None
        self._genre_counts: np.ndarray | None = None
        if genres is not None:
            self._genres = np.asarray(genres, dtype=np.float64)
            self._genre_counts = self._genres.sum(axis=1)
        sizes = {len(a) for a in (self._emb, self._genres) if a is not None}
        if len(sizes) != 1:
            raise ValueError("embeddings and genres must have one row per candidate")
        self.size = sizes.pop()

    def row(self, j: int) -> np.ndarray:
        """sim(i, j) for every candidate i."""
        out = np.zeros(self.size)
        if self._emb is not None and self.genre_weight < 1.0:
            out += (1.0 - self.genre_weight) * (self._emb @ self._emb[j])
        if self._genres is not None and self._genre_counts is not None and self.genre_weight > 0:
            inter = self._genres @ self._genres[j]
            union = self._genre_counts + self._genre_counts[j] - inter
            jac = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
            out += self.genre_weight * jac
        return out

    def diagonal(self) -> np.ndarray:
        """sim(i, i): 1, less the share of a part a candidate has nothing in (no embedding/genres)."""
        out = np.zeros(self.size)
        if self._emb is not None:
            out += (1.0 - self.genre_weight) * (np.abs(self._emb).sum(axis=1) > 0)
        if self._genre_counts is not None:
            out += self.genre_weight * (self._genre_counts > 0)
        return out

    def matrix(self) -> np.ndarray:
        return np.stack([self.row(j) for j in range(self.size)])

    def subset(self, positions: Sequence[int]) -> ItemSimilarity:
        """The similarity restricted to some candidates (e.g. a final list, for metrics)."""
        idx = np.asarray(positions, dtype=np.int64)
        emb = None if self._emb is None else self._emb[idx]
        genres = None if self._genres is None else self._genres[idx]
        return ItemSimilarity(emb, genres, self.genre_weight)


def adventure_utilities(
    utilities: np.ndarray, popularity: np.ndarray, adventurous: float
) -> np.ndarray:
    """z(utility) − adventurous·z(log(1 + popularity)) over the candidates (see module doc).

    Unknown popularity (NaN or negative) counts as average. At 0 the order is the utility order.
    """
    if not 0.0 <= adventurous <= 1.0:
        raise ValueError(f"adventurous must be in [0, 1], not {adventurous}")
    u = _zscore(np.asarray(utilities, dtype=np.float64))
    if adventurous == 0.0:
        return u
    pop = np.asarray(popularity, dtype=np.float64)
    known = np.isfinite(pop) & (pop >= 0)
    log_pop = np.zeros_like(pop)
    log_pop[known] = np.log1p(pop[known])
    z = np.zeros_like(pop)
    if known.any():
        z[known] = _zscore(log_pop[known])
    return u - adventurous * z


def _zscore(x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        return x.astype(np.float64)
    std = x.std()
    return (x - x.mean()) / std if std > 0 else np.zeros_like(x, dtype=np.float64)


def _unit_range(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.ones_like(x)


class _Constraints:
    """At most one pick per franchise and at most `limit` picks among `limited`."""

    def __init__(
        self, m: int, franchises: np.ndarray | None, limited: np.ndarray | None, limit: int | None
    ) -> None:
        self.allowed = np.ones(m, dtype=bool)
        self.franchises = None if franchises is None else np.asarray(franchises, dtype=np.int64)
        if self.franchises is not None and len(self.franchises) != m:
            raise ValueError("franchises must have one entry per candidate")
        self.limited = None if limited is None else np.asarray(limited, dtype=bool)
        if self.limited is not None and len(self.limited) != m:
            raise ValueError("limited must have one entry per candidate")
        self.limit = limit
        self.limited_picks = 0
        if self.limited is not None and limit is not None and limit <= 0:
            self.allowed &= ~self.limited

    def take(self, j: int) -> None:
        self.allowed[j] = False
        if self.franchises is not None and self.franchises[j] != NO_FRANCHISE:
            self.allowed &= self.franchises != self.franchises[j]
        if self.limited is not None and self.limited[j]:
            self.limited_picks += 1
            if self.limit is not None and self.limited_picks >= self.limit:
                self.allowed &= ~self.limited


def _check(utilities: np.ndarray, similarity: ItemSimilarity, count: int) -> np.ndarray:
    u = np.asarray(utilities, dtype=np.float64)
    if u.ndim != 1 or len(u) != similarity.size:
        raise ValueError("utilities must be one number per candidate of the similarity")
    if not np.isfinite(u).all():
        raise ValueError("utilities must be finite")
    if count < 0:
        raise ValueError("count cannot be negative")
    return u


def mmr(
    utilities: np.ndarray,
    similarity: ItemSimilarity,
    count: int,
    *,
    lam: float = 0.7,
    franchises: np.ndarray | None = None,
    limited: np.ndarray | None = None,
    limit: int | None = None,
) -> np.ndarray:
    """Positions (into the candidates) of up to `count` picks, in pick order. Ties go to the
    earlier candidate. λ = 1 is the pure utility order (under the constraints)."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], not {lam}")
    u = _check(utilities, similarity, count)
    m = len(u)
    rel = _unit_range(u) if m else u
    rules = _Constraints(m, franchises, limited, limit)
    max_sim = np.zeros(m)
    picks: list[int] = []
    while len(picks) < count:
        if not rules.allowed.any():
            break
        gain = lam * rel - (1.0 - lam) * max_sim
        j = int(np.argmax(np.where(rules.allowed, gain, -np.inf)))
        picks.append(j)
        rules.take(j)
        if lam < 1.0:
            np.maximum(max_sim, similarity.row(j), out=max_sim)
    return np.array(picks, dtype=np.int64)


def dpp(
    utilities: np.ndarray,
    similarity: ItemSimilarity,
    count: int,
    *,
    theta: float = 0.7,
    franchises: np.ndarray | None = None,
    limited: np.ndarray | None = None,
    limit: int | None = None,
    eps: float = 1e-10,
) -> np.ndarray:
    """Positions of up to `count` picks by fast greedy DPP MAP inference (see module doc).

    θ in [0, 1) trades utility (θ → 1) against diversity (θ = 0: log det S alone). When every
    remaining candidate is (numerically) inside the span of the picks, its marginal gain is zero
    and the rest are filled by utility, so a full list still comes back.
    """
    if not 0.0 <= theta < 1.0:
        raise ValueError(f"theta must be in [0, 1), not {theta}")
    u = _check(utilities, similarity, count)
    m = len(u)
    rules = _Constraints(m, franchises, limited, limit)
    rel = _unit_range(u) if m else u
    alpha = theta / (2.0 * (1.0 - theta))
    r = np.exp(alpha * (rel - 1.0))  # scaled by exp(−α) so the largest r is 1: no overflow
    d2 = r * r * similarity.diagonal()  # marginal gains: d_i² = L_ii − ‖c_i‖²
    factors = np.zeros((min(count, m), m))  # row k = k-th column of the incremental Cholesky c
    picks: list[int] = []
    while len(picks) < count and rules.allowed.any():
        # A candidate whose gain in S (d_i² / r_i²) is ~0 lies in the span of the picks; compare
        # in S, not L, so a low-utility item is not mistaken for a redundant one.
        live = rules.allowed & (d2 > eps * r * r)
        if not live.any():
            j = int(np.argmax(np.where(rules.allowed, rel, -np.inf)))
            picks.append(j)
            rules.take(j)
            continue
        j = int(np.argmax(np.where(live, d2, -np.inf)))
        k = len(picks)
        picks.append(j)
        rules.take(j)
        if len(picks) == count:
            break
        kernel_row = r * similarity.row(j) * r[j]  # L_{j,:}
        e = (kernel_row - factors[:k].T @ factors[:k, j]) / np.sqrt(d2[j])
        factors[k] = e
        d2 = d2 - e * e
    return np.array(picks, dtype=np.int64)


def rerank(
    method: Method,
    utilities: np.ndarray,
    similarity: ItemSimilarity,
    count: int,
    *,
    tradeoff: float = 0.7,
    franchises: np.ndarray | None = None,
    limited: np.ndarray | None = None,
    limit: int | None = None,
) -> np.ndarray:
    """`mmr` (tradeoff = λ) or `dpp` (tradeoff = θ), by name."""
    if method == "mmr":
        return mmr(
            utilities,
            similarity,
            count,
            lam=tradeoff,
            franchises=franchises,
            limited=limited,
            limit=limit,
        )
    if method == "dpp":
        return dpp(
            utilities,
            similarity,
            count,
            theta=tradeoff,
            franchises=franchises,
            limited=limited,
            limit=limit,
        )
    raise ValueError(f"unknown re-ranking method {method!r}; choose 'mmr' or 'dpp'")


# ----- diversity metrics (docs/evaluation.md#metrics) -------------------------------------------


def intra_list_diversity(similarity: ItemSimilarity, positions: Sequence[int]) -> float:
    """Mean pairwise (1 − similarity) within one list; 0 for lists shorter than two."""
    n = len(positions)
    if n < 2:
        return 0.0
    sim = similarity.subset(positions).matrix()
    upper = np.triu_indices(n, k=1)
    return float(np.mean(1.0 - sim[upper]))


def catalogue_coverage(lists: Iterable[Iterable[int]], n_items: int) -> float:
    """Share of the catalogue's `n_items` that appear in at least one list (vocabulary indices)."""
    if n_items <= 0:
        raise ValueError("n_items must be positive")
    seen: set[int] = set()
    for picks in lists:
        seen.update(int(i) for i in picks)
    return len(seen) / n_items


def franchise_duplicates(franchises: Sequence[int] | np.ndarray) -> int:
    """Picks beyond the first of their franchise, for one list's franchise ids (−1 = none)."""
    ids = [int(f) for f in franchises if int(f) != NO_FRANCHISE]
    return len(ids) - len(set(ids))


# ----- the whole step over the vocabulary --------------------------------------------------------


def select(
    utilities: np.ndarray,
    eligible: np.ndarray,
    item_embeddings: np.ndarray,
    franchises: np.ndarray,
    count: int,
    *,
    popularity: np.ndarray | None = None,
    adventurous: float = 0.0,
    genres: np.ndarray | None = None,
    genre_weight: float = 0.0,
    limited: np.ndarray | None = None,
    limit: int | None = None,
    method: Method = "dpp",
    tradeoff: float = 0.7,
    n_candidates: int = 200,
) -> np.ndarray:
    """Vocabulary indices of `count` picks, from vocabulary-wide arrays (index i = item i).

    Takes the `n_candidates` eligible items with the best utility (diversity never needs to reach
    deeper than a few hundred), applies the adventurous knob there, and re-ranks them with
    `method`. `limited`/`limit` cap the plan-to-watch picks; `franchises` holds −1 for none.
    """
    u = np.asarray(utilities, dtype=np.float64)
    pool = np.flatnonzero(np.asarray(eligible, dtype=bool))
    if len(pool) > n_candidates:
        best = np.argpartition(-u[pool], n_candidates - 1)[:n_candidates]
        pool = np.sort(pool[best])
    # Candidates in utility order (ties by index), so "earlier candidate wins" means "better".
    pool = pool[best_first(u[pool])]
    if popularity is not None:
        adjusted = adventure_utilities(u[pool], np.asarray(popularity)[pool], adventurous)
    else:
        adjusted = u[pool]
    similarity = ItemSimilarity(
        np.asarray(item_embeddings)[pool],
        None if genres is None else np.asarray(genres)[pool],
        genre_weight,
    )
    picks = rerank(
        method,
        adjusted,
        similarity,
        count,
        tradeoff=tradeoff,
        franchises=np.asarray(franchises)[pool],
        limited=None if limited is None else np.asarray(limited, dtype=bool)[pool],
        limit=limit,
    )
    return pool[picks]
