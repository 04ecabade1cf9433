import numpy as np
import pytest
import torch

from inference.encoding import ITEM_OFFSET, MASK_ITEM, PAD_ITEM, SCORE_MASK, TIME_NOW
from tests.training.tiny_data import N_ITEMS, planted_dataset
from training.batches import UserParts, finetune_batch, pretrain_batch, sasrec_batch
from training.dataset import Dataset
from training.finetune import FinetuneConfig, FinetuneJob
from training.model import ListTransformer, ModelConfig
from training.pretrain import PretrainConfig, PretrainJob
from training.train import FIELDS_IN, Dist, fit, load_config, to_device

TINY = "training/configs/tiny.toml"


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return UserParts(Dataset(planted_dataset(tmp_path_factory.mktemp("d") / "planted")), "loo")


def test_forward_backward_step(parts):
    model = ListTransformer(ModelConfig(n_items=N_ITEMS, max_len=16, d_model=16, n_heads=2))
    users, seeds = np.arange(4), np.arange(4, dtype=np.uint64)
    batch = pretrain_batch(parts, users, seeds, max_len=16, mask_prob=0.3, query_prob=0.5)
    hidden = model(to_device(batch, torch.device("cpu"), FIELDS_IN))
    states = hidden[torch.from_numpy(batch["target_rows"]), torch.from_numpy(batch["target_cols"])]
    logits = model.item_logits(states)
    assert logits.shape == (len(batch["target_items"]), N_ITEMS)
    score, status = model.entry_outputs(states, torch.from_numpy(batch["target_items"]))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(batch["target_items"]))
    (loss + score.mean() + status.mean()).backward()
    assert model.item_emb.weight.grad is not None and model.item_emb.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.blocks.parameters())


def test_padding_does_not_change_a_row(parts):
    torch.manual_seed(0)
    model = ListTransformer(ModelConfig(n_items=N_ITEMS, max_len=16, d_model=16, dropout=0.0))
    model.eval()
    short, long = parts.part(0).select(np.arange(3)), parts.part(1)
    from inference.encoding import encode

    alone = model(
        to_device(encode([short], 16, has_times=True).as_dict(), torch.device("cpu"), FIELDS_IN)
    )
    padded = model(
        to_device(
            encode([short, long], 16, has_times=True).as_dict(), torch.device("cpu"), FIELDS_IN
        )
    )
    assert torch.allclose(alone[0, -1], padded[0, -1], atol=1e-5)


def test_pretrain_masking_touches_only_chosen_positions(parts):
    users, seeds = np.arange(8), np.arange(100, 108, dtype=np.uint64)
    batch = pretrain_batch(parts, users, seeds, max_len=16, mask_prob=0.15, query_prob=1.0)
    rows, cols = batch["target_rows"], batch["target_cols"]
    masked = np.zeros(batch["items"].shape, dtype=bool)
    masked[rows, cols] = True
    assert (batch["items"][masked] == MASK_ITEM).all()
    assert (batch["scores"][masked] == SCORE_MASK).all()
    assert not (batch["items"][~masked] == MASK_ITEM).any()
    assert (batch["times"][:, -1] == TIME_NOW).all()  # query_prob 1: every last entry is the query
    # Unmasked tokens are the user's real training entries, in order, untouched.
    for row, user in enumerate(users):
        train = parts.part(int(user))
        real = batch["items"][row][batch["items"][row] != PAD_ITEM]
        keep = real != MASK_ITEM
        assert (real[keep] - ITEM_OFFSET == train.items[-len(real) :][keep]).all()
        targets = batch["target_items"][rows == row]
        assert (targets == train.items[-len(real) :][~keep]).all()
    # Same seeds, same batch: resume and DDP rely on it.
    again = pretrain_batch(parts, users, seeds, max_len=16, mask_prob=0.15, query_prob=1.0)
    assert all((again[k] == batch[k]).all() for k in batch)


def test_finetune_and_sasrec_batches_never_use_held_out_items(parts):
    users = np.repeat(np.arange(16), 4)
    seeds = np.arange(len(users), dtype=np.uint64)
    batch = finetune_batch(parts, users, seeds, max_len=16, holdout_share=0.1, n_next=1)
    assert (batch["items"][:, -1] == MASK_ITEM).all()
    for row, user in enumerate(users):
        train = parts.part(int(user)).items
        target = batch["target_items"][row][batch["target_items"][row] >= 0]
        history = batch["items"][row][batch["items"][row] >= ITEM_OFFSET] - ITEM_OFFSET
        cut = len(history)
        assert (history == train[:cut]).all() and (target == train[cut : cut + 1]).all()
    sb = sasrec_batch(parts, np.arange(4), np.arange(4, dtype=np.uint64), max_len=16)
    for row in range(4):
        train = parts.part(row).items
        got = sb["target_items"][row][sb["target_items"][row] >= 0]
        assert (got == train[1:]).all()


def test_loss_falls_and_model_learns_the_planted_cycle(tmp_path, parts):
    overrides = [
        f"out_dir={tmp_path}",
        "train.epochs=5",
        "train.lr=0.01",
        "finetune.cuts_per_user=4",
    ]
    cfg = load_config(FinetuneConfig, TINY, [*overrides, "name=ft"])
    cfg.model.n_items = N_ITEMS
    torch.manual_seed(0)
    state = fit(
        cfg,
        ListTransformer(cfg.model),
        FinetuneJob(cfg, parts, None),
        Dist(0, 1, torch.device("cpu")),
    )
    first, last = state.history[0], state.history[-1]
    assert last["loss_item"] < 0.7 * first["loss_item"]
    assert last["loss_score"] < 0.5 * first["loss_score"]  # scores are a function of the item
    # The next item is always last + 1: far above popularity's ~10/24 hit rate.
    assert last["val_HR@10"] >= 0.9
    assert (tmp_path / "ft" / "loss.png").stat().st_size > 0
    assert (tmp_path / "ft" / "val.png").stat().st_size > 0


def test_pretrain_job_runs_and_records_metrics(tmp_path, parts):
    cfg = load_config(PretrainConfig, TINY, [f"out_dir={tmp_path}", "train.epochs=2"])
    cfg.model.n_items = N_ITEMS
    state = fit(
        cfg,
        ListTransformer(cfg.model),
        PretrainJob(cfg, parts, None),
        Dist(0, 1, torch.device("cpu")),
    )
    lines = (tmp_path / "tiny" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 == len(state.history)
    assert {"loss_item", "loss_score", "loss_status", "val_NDCG@10", "tokens_per_s"} <= set(
        state.history[0]
    )
