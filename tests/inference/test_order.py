"""`best_first` orders exactly as numpy's stable argsort of the negated values."""

from __future__ import annotations

import numpy as np
import pytest

from inference.order import best_first


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_best_first_is_the_stable_descending_argsort(dtype: type) -> None:
    rng = np.random.default_rng(0)
    for trial in range(500):
        n = int(rng.integers(0, 80))
        if trial % 2:
            values = rng.integers(-3, 4, n).astype(dtype)  # many ties
        else:
            values = rng.standard_normal(n).astype(dtype)
        if np.dtype(dtype).kind == "f" and n:
            values[rng.integers(0, n, 3)] = -np.inf  # titles on the list
            if trial % 5 == 0:
                values[rng.integers(0, n, 2)] = np.nan
            if trial % 7 == 0:
                values[rng.integers(0, n, 2)] = -0.0
        expected = np.argsort(-values, kind="stable")
        np.testing.assert_array_equal(best_first(values), expected)
