import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.training.tiny_data import N_ITEMS, planted_dataset
from training.batches import UserParts
from training.dataset import Dataset
from training.model import ListTransformer
from training.pretrain import PretrainConfig, PretrainJob
from training.train import ConfigError, Dist, fit, load_checkpoint, load_config, ranking_metrics

TINY = "training/configs/tiny.toml"
CPU = Dist(0, 1, torch.device("cpu"))


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return planted_dataset(tmp_path_factory.mktemp("d") / "planted")


def run(data_path, out, *overrides, resume=False, interrupt_after=None):
    cfg = load_config(
        PretrainConfig,
        TINY,
        [
            f"data.path={data_path}",
            f"out_dir={out}",
            "train.epochs=3",
            "train.val_users=8",
            "model.dropout=0.1",
            *overrides,
        ],
    )
    cfg.model.n_items = N_ITEMS
    parts = UserParts(Dataset(data_path), "loo")
    job = PretrainJob(cfg, parts, None)
    if interrupt_after is not None:
        batches, seen = job.batches, [0]

        def dying(epoch, rank, world):
            for batch in batches(epoch, rank, world):
                if seen[0] == interrupt_after:
                    raise KeyboardInterrupt  # a kill between two steps
                seen[0] += 1
                yield batch

        job.batches = dying  # type: ignore[method-assign]
    torch.manual_seed(cfg.train.seed)
    model = ListTransformer(cfg.model)
    state = fit(cfg, model, job, CPU, resume=resume)
    return model, state


def test_resume_after_stop_and_after_kill_continue_the_same_run(tmp_path, data_path):
    # Dropout on: the per-step reseeding must reproduce its masks too.
    whole, whole_state = run(data_path, tmp_path / "a")
    run(data_path, tmp_path / "b", "train.stop_after_epoch=1")
    assert load_checkpoint(tmp_path / "b" / "tiny" / "ckpt.pt")["state"]["epoch"] == 1
    resumed, resumed_state = run(data_path, tmp_path / "b", resume=True)
    with pytest.raises(KeyboardInterrupt):
        run(data_path, tmp_path / "c", "train.checkpoint_every=3", interrupt_after=7)
    ckpt = load_checkpoint(tmp_path / "c" / "tiny" / "ckpt.pt")
    assert ckpt["state"]["step"] == 6 and ckpt["state"]["step_in_epoch"] == 2  # mid-epoch 2
    killed, killed_state = run(data_path, tmp_path / "c", "train.checkpoint_every=3", resume=True)
    for other, other_state in ((resumed, resumed_state), (killed, killed_state)):
        for (name, a), b in zip(
            whole.state_dict().items(), other.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), name
        assert [r["loss"] for r in other_state.history] == [r["loss"] for r in whole_state.history]
    assert len((tmp_path / "b" / "tiny" / "metrics.jsonl").read_text().splitlines()) == 3


def test_config_loading_and_overrides():
    cfg = load_config(PretrainConfig, TINY, ["train.lr=0.5", "pretrain.mask_prob=0.3", "name=x"])
    assert cfg.train.lr == 0.5 and cfg.pretrain.mask_prob == 0.3 and cfg.name == "x"
    assert cfg.model.d_model == 32  # from the file
    with pytest.raises(ConfigError, match=r"train\.lrr"):
        load_config(PretrainConfig, TINY, ["train.lrr=1"])
    with pytest.raises(ConfigError, match="must be int"):
        load_config(PretrainConfig, TINY, ["train.epochs=abc"])


def test_cli_bad_input_is_a_clean_error(tmp_path, data_path):
    for extra in (["--set", "train.nope=1"], ["--set", "data.split=nosuch"]):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "training",
                "pretrain",
                "--config",
                TINY,
                "--device",
                "cpu",
                "--set",
                f"data.path={data_path}",
                "--set",
                f"out_dir={tmp_path}",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2
        assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


def test_bucketed_batches_weigh_every_term_alike():
    import torch

    from training.train import TrainState, loss_denominator

    state = TrainState()
    counts = [torch.tensor([10.0, 2.0]), torch.tensor([100.0, 4.0])]
    plain = [loss_denominator(c, state, bucketed=False) for c in counts]
    assert [d.tolist() for d in plain] == [[10.0, 2.0], [100.0, 4.0]]
    bucketed = []
    for c in counts:  # the loop advances state.step after each step
        bucketed.append(loss_denominator(c, state, bucketed=True).tolist())
        state.step += 1
    # A running mean of the counts: the short batch's terms no longer weigh 10x the long one's.
    assert bucketed == [[10.0, 2.0], [55.0, 3.0]]
    assert state.count_sums == [110.0, 6.0]


def test_validation_never_ranks_titles_no_one_listed():
    """The training loop's check ranks as `evaluate` does: a catalogue title absent from the data
    can never be a target, so scoring it high must not cost the model its hit."""
    scores = np.array([[0.1, 0.9, 0.5, 5.0]], dtype=np.float32)  # item 3: no one has it
    seen, targets = [np.array([1])], [np.array([2])]
    assert ranking_metrics(scores, seen, targets, k=1)["val_HR@1"] == 0.0
    unlisted = np.array([False, False, False, True])
    assert ranking_metrics(scores, seen, targets, k=1, unlisted=unlisted)["val_HR@1"] == 1.0
