"""`best_first` orders exactly as numpy's stable argsort of the negated values."""

from __future__ import annotations

import numpy as np
import pytest

from inference.order import best_first


def _values(rng: np.random.Generator, n: int, dtype: type, ties: float) -> np.ndarray:
    """`ties` of them drawn from 3 values, the rest distinct; floats get −inf, NaN and −0.0."""
    values = rng.standard_normal(n) * 100
    tied = rng.random(n) < ties
    values[tied] = rng.integers(-1, 2, int(tied.sum()))
    values = values.astype(dtype)
    if np.dtype(dtype).kind == "f" and n:
        values[rng.integers(0, n, 3)] = -np.inf  # titles on the list
        values[rng.integers(0, n, 2)] = np.nan
        values[rng.integers(0, n, 2)] = -0.0
    return values


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize("ties", [0.0, 0.05, 0.5, 1.0])  # both of its sorts, every tie share
def test_best_first_is_the_stable_descending_argsort(dtype: type, ties: float) -> None:
    rng = np.random.default_rng(0)
    for n in [*range(0, 40), 255, 256, 257, 1000, 5000]:
        values = _values(rng, n, dtype, ties)
        np.testing.assert_array_equal(best_first(values), np.argsort(-values, kind="stable"))
