"""Best-first orders of score arrays, as `np.argsort(-values, kind="stable")` gives them, faster.

numpy's stable sort of floats (timsort) takes about three times its default (vectorised) quicksort
on a vocabulary-wide array of distinct scores, and serving sorts a few dozen such arrays a request.
There, quicksort orders everything and only the runs of equal values (titles on the list at −inf,
the odd equal score) are put back in index order. Timsort is the faster one where most values are
equal (a first stage that scores only a few titles), and a sample of the values says which case
an array is.
"""

from __future__ import annotations

import numpy as np

_SAMPLE = 256  # values looked at to guess how many ties an array has
_MOSTLY_TIES = 0.75  # distinct share of the sample below which timsort is used


def best_first(values: np.ndarray) -> np.ndarray:
    """int64 indices of `values` (1-D) from the largest down, equal values in index order; NaN
    last, as `np.argsort(-values, kind="stable")`."""
    values = np.asarray(values)
    sample = values[:: max(len(values) // _SAMPLE, 1)]
    if len(np.unique(sample)) < _MOSTLY_TIES * len(sample):
        return np.argsort(-values, kind="stable")
    order = np.argsort(-values)
    if len(order) < 2:
        return order
    ordered = values[order]
    same = ordered[1:] == ordered[:-1]
    if ordered.dtype.kind == "f":
        nan = np.isnan(ordered)
        same |= nan[1:] & nan[:-1]
    if not same.any():
        return order
    # Positions in a run of equal values, each run labelled; reorder each run by index (one sort
    # of run label and index packed in an int64).
    in_run = np.zeros(len(order), dtype=bool)
    in_run[1:] = same
    in_run[:-1] |= same
    at = np.flatnonzero(in_run)
    run = np.cumsum(np.concatenate([[True], ~same]))[at]
    key = (run << 32) | order[at]
    key.sort()
    order[at] = key & 0xFFFFFFFF
    return order
