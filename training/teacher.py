"""EASE as a teacher for the fine-tune's watch head (knowledge distillation, Hinton et al. 2015).

On untimed lists each fine-tuning sample holds out a tenth of a user's titles: a handful of
targets out of thousands of titles, so the watch softmax learns from very few positives per step.
EASE (Steck, 2019), fitted on the same training part, scores every title for the same history in
closed form. Its softmax over the titles the sample has not listed is a dense target: the student
also learns how much more likely one unlisted title is than another, not only which few were held
out. Nothing but the training part goes into the teacher, so validation and test targets stay
unseen; serving never runs it (the bundle carries the transformer alone).

With `folds` > 1 the teacher is cross-fitted: users are split into folds by index, and a user's
samples are scored by an EASE fitted on the other folds' users only. An EASE fitted on the user
themself partly remembers their held-out titles (on the anime sample half of a softmax at a low
temperature lands on them), which teaches the student little beyond the targets it already has.

The teacher keeps each item's `k` strongest EASE weights (`training.neighbours.fit_neighbours`), so
a batch's scores are one sparse product.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from training.batches import UserParts
from training.neighbours import fit_neighbours, interaction_matrix


class EaseTeacher:
    """Sparse EASE scores of histories given as padded item arrays, one EASE per user fold."""

    def __init__(self, parts: UserParts, lam: float, k: int, folds: int = 1) -> None:
        if folds < 1:
            raise ValueError(f"folds must be >= 1, got {folds}")
        self.folds = folds
        self.n_items = parts.n_items
        matrix = interaction_matrix(parts)
        fold_of_row = np.arange(matrix.shape[0]) % folds
        self.weights: list[sp.csr_matrix] = []
        for fold in range(folds):
            if folds > 1:  # the other folds' users only
                matrix_of_others = sp.csr_matrix(
                    sp.diags((fold_of_row != fold).astype(np.float32)) @ matrix
                )
            else:
                matrix_of_others = matrix
            items, weights = fit_neighbours(matrix_of_others, lam, k)
            rows = np.repeat(np.arange(self.n_items), items.shape[1])
            self.weights.append(
                sp.csr_matrix(
                    (weights.ravel(), (rows, items.ravel().astype(np.int64))),
                    shape=(self.n_items, self.n_items),
                )
            )

    def scores(self, users: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """float32 [B, n_items]: x·B for each of the B `users`, x the history of sample b (its
        `items[rows == b]`), B the EASE that did not see that user."""
        matrix = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, items)),
            shape=(len(users), self.n_items),
        )
        matrix.data[:] = 1.0  # a title listed twice still counts once, as EASE was fitted
        out = np.empty((len(users), self.n_items), dtype=np.float32)
        fold_of = np.asarray(users) % self.folds
        for fold in np.unique(fold_of):
            pick = np.flatnonzero(fold_of == fold)
            out[pick] = (matrix[pick] @ self.weights[fold]).toarray()
        return out


def distillation_loss(
    student_log_probs: torch.Tensor, teacher_scores: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Summed cross-entropy of the student against softmax(teacher / temperature), per row over
    the titles the student may rank (finite log-probabilities: not listed, not unlisted anywhere).
    """
    allowed = torch.isfinite(student_log_probs)
    teacher = (teacher_scores / temperature).masked_fill(~allowed, float("-inf"))
    target = torch.softmax(teacher, dim=-1)
    return -(target * student_log_probs.masked_fill(~allowed, 0.0)).sum()
