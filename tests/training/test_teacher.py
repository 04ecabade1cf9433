"""EASE as the fine-tune's teacher (`training.teacher`, `finetune.teacher_weight`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.tiny_data import write_lists
from training.__main__ import main as cli
from training.baselines.ease import ease_weights
from training.batches import UserParts
from training.dataset import TEST, TRAIN, VALIDATION, Dataset
from training.errors import ConfigError
from training.finetune import FinetuneConfig, FinetuneJob
from training.neighbours import interaction_matrix
from training.teacher import EaseTeacher, distillation_loss

N_ITEMS = 30
PRIVATE = (28, 29)  # a pair of titles only user 0 lists


def lists_dataset(path: Path, n_users: int = 60, seed: int = 0) -> Path:
    """Users of two tastes (titles 0-13 or 14-27), 8 titles each, one held out for test and one
    for validation; user 0 also lists the pair nobody else has."""
    rng = np.random.default_rng(seed)
    items, labels, offsets = [], [], [0]
    for user in range(n_users):
        picked = rng.choice(14, 8, replace=False) + (user // 2 % 2) * 14  # not the folds
        if user == 0:
            picked = np.concatenate([picked, PRIVATE])
        label = np.full(len(picked), TRAIN)
        label[0], label[1] = TEST, VALIDATION
        items.append(picked)
        labels.append(label)
        offsets.append(offsets[-1] + len(picked))
    flat = np.concatenate(items)
    arrays = {
        "items": flat,
        "scores": np.full(len(flat), 8),
        "statuses": np.ones(len(flat), dtype=np.int64),
        "progress": np.zeros(len(flat), dtype=np.int64),
        "times": np.full(len(flat), -1),
    }
    return write_lists(
        path,
        arrays,
        offsets,
        np.concatenate(labels),
        name="tastes",
        has_times=False,
        split="random",
        n_items=N_ITEMS,
    )


def _flat(histories: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Padded histories (-1 after each) -> the sample and item of each entry."""
    rows, cols = np.nonzero(histories >= 0)
    return rows, histories[rows, cols]


@pytest.fixture
def parts(tmp_path: Path) -> UserParts:
    return UserParts(Dataset(lists_dataset(tmp_path / "tastes")), "random", cache=False)


def test_one_fold_scores_are_ease_on_the_training_part(parts: UserParts):
    teacher = EaseTeacher(parts, lam=10.0, k=N_ITEMS - 1)
    dense = ease_weights((interaction_matrix(parts).T @ interaction_matrix(parts)).toarray(), 10.0)
    histories = np.array([[0, 3, 5, -1], [14, 15, 20, 27]])
    expected = np.zeros((2, N_ITEMS))
    for row, history in enumerate(histories):
        expected[row] = dense[history[history >= 0]].sum(axis=0)
    got = teacher.scores(np.array([1, 2]), *_flat(histories))
    assert np.allclose(got, expected, atol=1e-5)
    # A first-taste history puts the first taste ahead: the teacher carries the co-occurrence.
    assert got[0, :14].mean() > got[0, 14:28].mean()


def test_held_out_titles_never_reach_the_teacher(parts: UserParts):
    """Only training entries are fitted: a title seen only as someone's test entry scores 0."""
    test_only = np.setdiff1d(
        np.asarray(parts.dataset.items)[parts.labels == TEST],
        np.asarray(parts.dataset.items)[parts.labels == TRAIN],
    )
    teacher = EaseTeacher(parts, lam=10.0, k=N_ITEMS - 1)
    scores = teacher.scores(np.arange(4), *_flat(np.array([[0, 1, 2, 3], [14, 15, 16, 17]] * 2)))
    assert np.all(scores[:, test_only] == 0.0)


def test_a_cross_fitted_teacher_does_not_know_the_users_own_list(parts: UserParts):
    """User 0 alone lists the private pair. One EASE over everyone links the pair for user 0's own
    samples; cross-fitted, user 0 is scored by an EASE that never saw them, while a user of the
    other fold is scored by one that did."""
    first, second = PRIVATE
    history = np.array([[first, 2, 4]])
    shared = EaseTeacher(parts, lam=1.0, k=N_ITEMS - 1, folds=1)
    crossed = EaseTeacher(parts, lam=1.0, k=N_ITEMS - 1, folds=2)
    assert shared.scores(np.array([0]), *_flat(history))[0, second] > 0.05
    assert crossed.scores(np.array([0]), *_flat(history))[0, second] == 0.0
    assert crossed.scores(np.array([1]), *_flat(history))[0, second] > 0.05


def test_the_distillation_loss_pulls_the_student_to_the_teachers_softmax():
    torch.manual_seed(0)
    teacher = torch.randn(3, 12)
    blocked = torch.zeros(3, 12, dtype=torch.bool)
    blocked[:, :3] = True  # titles the sample listed: outside both distributions
    logits = torch.zeros(3, 12, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    for _ in range(500):
        optimizer.zero_grad()
        log_probs = torch.log_softmax(logits.masked_fill(blocked, float("-inf")), dim=-1)
        distillation_loss(log_probs, teacher, temperature=0.5).backward()
        optimizer.step()
    with torch.no_grad():
        learned = torch.softmax(logits[:, 3:], dim=-1)
        wanted = torch.softmax(teacher[:, 3:] / 0.5, dim=-1)
    assert torch.allclose(learned, wanted, atol=1e-3)
    assert logits.grad is not None and torch.all(logits.grad[:, :3] == 0)


def test_finetune_with_a_teacher_trains_and_records_its_loss(tmp_path: Path):
    path = lists_dataset(tmp_path / "tastes")
    code = cli(
        [
            "finetune",
            "--config",
            "training/configs/tiny.toml",
            "--set",
            f"data.path={path}",
            "--set",
            "data.split=random",
            "--set",
            f"out_dir={tmp_path}",
            "--set",
            "finetune.teacher_weight=1.0",
            "--set",
            "finetune.teacher_lambda=10",
            "--set",
            "finetune.teacher_temperature=0.01",
            "--set",
            "finetune.holdout_share=0.3",
            "--set",
            "finetune.cuts_per_user=8",
            "--set",
            "train.epochs=8",
        ]
    )
    assert code == 0
    lines = (tmp_path / "tiny" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    teacher_losses = [r["loss_teacher"] for r in records if "loss_teacher" in r]
    assert len(teacher_losses) == 8
    assert teacher_losses[-1] < teacher_losses[0] - 0.1
    # The student learned the two tastes the teacher knows: validation is well above chance.
    assert records[-1]["val_NDCG@10"] > 0.3


def test_a_teacher_is_refused_for_the_next_entries_fine_tune(tmp_path: Path):
    cfg = FinetuneConfig()
    cfg.finetune.teacher_weight = 1.0
    cfg.finetune.next_entries = True
    parts = UserParts(Dataset(lists_dataset(tmp_path / "tastes")), "random", cache=False)
    with pytest.raises(ConfigError, match="teacher_weight"):
        FinetuneJob(cfg, parts, None)
