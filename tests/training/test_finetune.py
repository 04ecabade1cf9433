"""The one-cut fine-tune's watch loss: the history stays out of the softmax, the targets stay in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.tiny_data import N_ITEMS, planted_dataset
from training.batches import UserParts
from training.dataset import Dataset
from training.finetune import FinetuneConfig, FinetuneJob
from training.model import ListTransformer
from training.train import FIELDS_IN, load_config


@pytest.mark.parametrize("has_times", [True, False])
def test_the_watch_loss_leaves_the_whole_history_out_of_the_softmax(
    tmp_path: Path, has_times: bool
) -> None:
    parts = UserParts(Dataset(planted_dataset(tmp_path / "d", has_times=has_times)), "loo")
    # max_len 4: most histories are longer than what is encoded, and all of them stays out.
    cfg = load_config(
        FinetuneConfig, "training/configs/tiny.toml", [f"out_dir={tmp_path}", "model.max_len=4"]
    )
    cfg.model.n_items = N_ITEMS
    job = FinetuneJob(cfg, parts, None)
    torch.manual_seed(0)
    model = ListTransformer(cfg.model).eval()
    batch = next(iter(job.batches(0, 0, 1)))
    with torch.no_grad():
        got = float(job.losses(model, batch, torch.device("cpu"))["item"][0])

    with torch.no_grad():
        states = model({k: torch.from_numpy(batch[k]) for k in FIELDS_IN})[:, -1]
        logits = model.item_logits(states).numpy().astype(np.float64)
    expected = 0.0
    longer = 0
    for row, targets in enumerate(batch["target_items"]):
        history = batch["seen_items"][batch["seen_rows"] == row]
        longer += len(history) > cfg.model.max_len - 1
        targets = targets[targets >= 0]
        allowed = np.ones(N_ITEMS, dtype=bool)
        allowed[history] = False
        allowed[targets] = True
        norm = np.log(np.exp(logits[row, allowed]).sum())
        expected -= (logits[row, targets] - norm).sum()
    assert longer > 0
    assert got == pytest.approx(expected, rel=1e-4)
