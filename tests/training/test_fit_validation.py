"""`data.fit_validation`: the test-time refit trains on train + validation, and nothing that
learns from the validation part may read a model refitted on it."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from tests.training.tiny_data import planted_dataset
from training import finetune, ranker
from training.batches import UserParts
from training.dataset import TEST, TRAIN, VALIDATION, Dataset
from training.errors import ConfigError
from training.train import load_checkpoint


@pytest.mark.parametrize("has_times", [True, False])
def test_validation_entries_become_training_entries_in_their_place(
    tmp_path: Path, has_times: bool
) -> None:
    dataset = Dataset(planted_dataset(tmp_path / "d", has_times=has_times))
    plain = UserParts(dataset, "loo")
    refit = UserParts(dataset, "loo", with_validation=True)
    assert (refit.counts[TRAIN] == plain.counts[TRAIN] + plain.counts[VALIDATION]).all()
    assert (refit.counts[VALIDATION] == 0).all()
    assert len(refit.users_with(min_train=1, label=VALIDATION)) == 0
    for user in range(dataset.n_users):
        both = plain.part(user, (TRAIN, VALIDATION))
        assert (refit.part(user).items == both.items).all()  # in the list's own order
        assert (refit.part(user, (TEST,)).items == plain.part(user, (TEST,)).items).all()


def _args(tmp_path: Path, data: Path, *overrides: str) -> argparse.Namespace:
    return argparse.Namespace(
        config="training/configs/tiny.toml",
        device="cpu",
        resume=False,
        overrides=[f"data.path={data}", "data.split=loo", f"out_dir={tmp_path}", *overrides],
    )


def test_a_refit_trains_without_validation_and_the_ranker_refuses_it(tmp_path: Path) -> None:
    data = planted_dataset(tmp_path / "d")
    refit = ("data.fit_validation=true", "train.epochs=1", "name=refit")
    with pytest.raises(ConfigError, match="val_users = 0"):
        finetune.main(_args(tmp_path, data, *refit, "train.val_users=8"))
    assert finetune.main(_args(tmp_path, data, *refit, "train.val_users=0")) == 0
    ckpt = load_checkpoint(tmp_path / "refit" / "ckpt.pt")
    assert ckpt["config"]["data"]["fit_validation"] is True
    assert np.isfinite(ckpt["state"]["history"][-1]["loss"])

    plain = ("train.epochs=1", "train.val_users=0", "name=plain")
    assert finetune.main(_args(tmp_path, data, *plain)) == 0
    (tmp_path / "rk.toml").write_text("[train]\nval_users = 8\n")
    for overrides in (  # a refitted model; the ranker itself asked to refit
        [f"ranker.finetuned={tmp_path}/refit/ckpt.pt"],
        [f"ranker.finetuned={tmp_path}/plain/ckpt.pt", "data.fit_validation=true"],
    ):
        args = _args(tmp_path, data, "name=rk", *overrides)
        args.config = str(tmp_path / "rk.toml")
        with pytest.raises(ConfigError, match="fit_validation"):
            ranker.main(args)
