"""Batches built in DataLoader worker processes (`train.loader_workers`) are the batches built in
the training loop, in the same order."""

import numpy as np
import pytest
import torch

from tests.training.tiny_data import N_ITEMS, planted_dataset
from training.batches import UserParts
from training.dataset import Dataset
from training.model import ListTransformer
from training.pretrain import PretrainConfig, PretrainJob
from training.train import Dist, epoch_batches, fit, load_config

TINY = "training/configs/tiny.toml"


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    path = planted_dataset(tmp_path_factory.mktemp("d") / "planted")
    cfg = load_config(
        PretrainConfig,
        TINY,
        [
            f"data.path={path}",
            f"out_dir={tmp_path_factory.mktemp('runs')}",
            "train.val_users=0",
            "train.steps_per_epoch=3",
        ],
    )
    cfg.model.n_items = N_ITEMS
    return PretrainJob(cfg, UserParts(Dataset(path), "loo"), None)


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_batches_are_the_loop_batches_in_order(job, workers):
    for epoch in (0, 1):
        here = list(epoch_batches(job, epoch, 0, 1))
        there = list(epoch_batches(job, epoch, 0, 1, workers))
        assert len(here) == len(there) == job.steps_per_epoch() > workers
        assert job.steps_per_epoch() % 2 == 1  # the last step falls to the first worker
        for a, b in zip(here, there, strict=True):
            assert a.keys() == b.keys()
            for name in a:
                assert isinstance(b[name], np.ndarray) and b[name].dtype == a[name].dtype
                np.testing.assert_array_equal(b[name], a[name], err_msg=name)


def test_a_run_with_loader_workers_trains_the_same_model(job):
    states = []
    for workers in (0, 2):
        job.cfg.train.epochs, job.cfg.train.loader_workers = 1, workers
        job.cfg.name = f"workers{workers}"
        torch.manual_seed(job.cfg.train.seed)
        model = ListTransformer(job.cfg.model)
        fit(job.cfg, model, job, Dist(0, 1, torch.device("cpu")))
        states.append(model.state_dict())
    for name, value in states[0].items():
        torch.testing.assert_close(states[1][name], value, rtol=0, atol=0, msg=name)
