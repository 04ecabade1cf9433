"""Best-first orders of score arrays, as `np.argsort(-values, kind="stable")` gives them, faster.

A stable sort of floats is numpy's timsort: about four times its default (vectorised) quicksort on
a vocabulary-wide array, and serving sorts a few dozen such arrays a request. Ties are few (titles
on the list at −inf, the odd equal score), so quicksort orders everything and only the runs of equal
values are put back in index order.
"""

from __future__ import annotations

import numpy as np


def best_first(values: np.ndarray) -> np.ndarray:
    """int64 indices of `values` (1-D) from the largest down, equal values in index order; NaN
    last, as `np.argsort(-values, kind="stable")`."""
    order = np.argsort(-np.asarray(values))
    if len(order) < 2:
        return order
    ordered = np.asarray(values)[order]
    same = ordered[1:] == ordered[:-1]
    nan = np.isnan(ordered) if ordered.dtype.kind == "f" else None
    if nan is not None:
        same |= nan[1:] & nan[:-1]
    if not same.any():
        return order
    # Positions in a run of equal values, each run labelled; reorder each run by index.
    in_run = np.zeros(len(order), dtype=bool)
    in_run[1:] = same
    in_run[:-1] |= same
    at = np.flatnonzero(in_run)
    run = np.cumsum(np.concatenate([[True], ~same]))[at]
    order[at] = order[at][np.lexsort((order[at], run))]
    return order
