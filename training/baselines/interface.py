"""What a model implements to be evaluated, and the registry that maps `--models` names to it.

A model is built by a factory from the text after the first ':' of its `--models` entry
(`ease:300` -> factory("300"), `sasrec:runs/a.pt` -> factory("runs/a.pt"), `ease` -> factory(None)).
A factory registered with a `grid` is tuned when no argument is given: the harness fits one model per
grid entry on the training part, keeps the best on the validation split and refits it.

A module `training/<name>.py` that calls `register_model("<name>", ...)` when imported is found by
`--models <name>:...` without any change here.

`--score-models` takes score models (a 0–10 score per held-out entry, for RMSE) and status models
(the probability of each status, for the status AUCs); one model may be both, as ours is.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from training.dataset import History
from training.errors import TrainingError


class NotApplicable(TrainingError):
    """Raised by `fit` when a model cannot be used on this data; the harness skips it with a note."""


@dataclass(frozen=True)
class TrainData:
    """The part of a dataset a model may learn from.

    While tuning it is the train split; for the final test run it is train + validation. Nothing of
    the evaluated targets is in it.

    matrix     binary float32 CSR [n_users, n_items]: 1 where the user has the item in this part
    histories  per user, this part's interactions in time order (scores, statuses... included)
    n_items    size of the ranking (every item of the dataset, seen in this part or not)
    has_times  False when the data has no real order (Markov-style models must not rely on it)
    """

    matrix: sp.csr_matrix
    histories: list[History]
    n_items: int
    has_times: bool

    @property
    def n_users(self) -> int:
        return len(self.histories)

    def scored(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(users, items, scores) of every scored interaction in this part."""
        users, items, scores = [], [], []
        for user, history in enumerate(self.histories):
            has_score = history.scores > 0
            items.append(history.items[has_score])
            scores.append(history.scores[has_score])
            users.append(np.full(int(has_score.sum()), user, dtype=np.int64))
        if not users:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0, dtype=np.float64)
        return (
            np.concatenate(users),
            np.concatenate(items).astype(np.int64),
            np.concatenate(scores).astype(np.float64),
        )


class Recommender(Protocol):
    name: str
    kind: str  # "baseline" or "ours"

    def fit(self, data: TrainData) -> None: ...

    def score(self, users: np.ndarray, histories: list[History]) -> np.ndarray:
        """float32 [len(users), n_items]; higher is better. `histories[i]` is everything user
        `users[i]` has before the evaluated items, oldest first. Items in the history need not be
        masked: the harness removes them."""
        ...


@runtime_checkable
class ScoreModel(Protocol):
    name: str
    kind: str

    def fit(self, data: TrainData) -> None: ...

    def predict(self, users: np.ndarray, items: np.ndarray, histories: list[History]) -> np.ndarray:
        """Predicted 0–10 score of `items[i]` for `users[i]`, whose history is `histories[i]`."""
        ...


@runtime_checkable
class StatusModel(Protocol):
    name: str
    kind: str

    def fit(self, data: TrainData) -> None: ...

    def status_probabilities(
        self,
        users: np.ndarray,
        items: np.ndarray,
        histories: list[History],
        codes: Sequence[int],
    ) -> np.ndarray:
        """float [len(items), len(codes)]: the probability that `users[i]` (history `histories[i]`)
        gives `items[i]` the status code `codes[j]` (`inference.animelist.STATUS_CODES`)."""
        ...


RecommenderFactory = Callable[[str | None], Recommender]
ScoreModelFactory = Callable[[str | None], ScoreModel]
StatusModelFactory = Callable[[str | None], StatusModel]


@dataclass(frozen=True)
class Registration:
    factory: Callable[[str | None], object]
    grid: tuple[str, ...]  # arguments tried when none is given; empty: factory(None), untuned


_RANKERS: dict[str, Registration] = {}
_SCORERS: dict[str, Registration] = {}


def register_model(name: str, factory: RecommenderFactory, grid: Sequence[str] = ()) -> None:
    _RANKERS[name] = Registration(factory, tuple(grid))


def register_score_model(name: str, factory: ScoreModelFactory, grid: Sequence[str] = ()) -> None:
    _SCORERS[name] = Registration(factory, tuple(grid))


def register_status_model(name: str, factory: StatusModelFactory, grid: Sequence[str] = ()) -> None:
    """A status-only model, listed with `--score-models` like the score models."""
    _SCORERS[name] = Registration(factory, tuple(grid))


def _lookup(table: dict[str, Registration], name: str, what: str) -> Registration:
    if name not in table and name.isidentifier():
        # A plug-in module registers itself on import (see the module docstring).
        try:
            importlib.import_module(f"training.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"training.{name}":
                raise
    if name not in table:
        raise TrainingError(f"unknown {what} {name!r}; known: {', '.join(sorted(table)) or 'none'}")
    return table[name]


def ranking_model(name: str) -> Registration:
    return _lookup(_RANKERS, name, "ranking model")


def score_model(name: str) -> Registration:
    return _lookup(_SCORERS, name, "score model")


def parse_params(arg: str | None, primary: str) -> dict[str, str]:
    """'300' -> {primary: '300'}; 'k=50+shrink=10' -> {'k': '50', 'shrink': '10'}.

    '+' separates pairs because ',' already separates models on the command line.
    """
    if not arg:
        return {}
    params: dict[str, str] = {}
    for part in arg.split("+"):
        key, sep, value = part.partition("=")
        if not sep:
            key, value = primary, key
        if not key or not value:
            raise TrainingError(
                f"bad model argument {arg!r}: expected VALUE or KEY=VALUE+KEY=VALUE"
            )
        params[key.strip()] = value.strip()
    return params


def take_float(params: dict[str, str], key: str, default: float) -> float:
    try:
        return float(params.pop(key, default))
    except ValueError as exc:
        raise TrainingError(f"parameter {key} must be a number") from exc


def take_int(params: dict[str, str], key: str, default: int) -> int:
    try:
        return int(params.pop(key, default))
    except ValueError as exc:
        raise TrainingError(f"parameter {key} must be an integer") from exc


def reject_leftovers(model: str, params: dict[str, str]) -> None:
    if params:
        raise TrainingError(f"{model}: unknown parameter(s) {', '.join(sorted(params))}")


def history_matrix(histories: Sequence[History], n_items: int) -> sp.csr_matrix:
    """Binary float32 CSR [len(histories), n_items] of the items in each history."""
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    indptr = np.zeros(len(histories) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = (
        np.concatenate([h.items for h in histories]).astype(np.int64)
        if len(histories)
        else np.zeros(0, dtype=np.int64)
    )
    data = np.ones(len(indices), dtype=np.float32)
    matrix = sp.csr_matrix((data, indices, indptr), shape=(len(histories), n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # an item listed twice is still one interaction in a binary matrix
    return matrix
