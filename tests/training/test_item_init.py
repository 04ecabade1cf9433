"""Item embeddings started from PureSVD factors (`model.item_init = "svd"`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.training.tiny_data import write_lists
from training.__main__ import main as cli
from training.dataset import TEST, TRAIN
from training.errors import ConfigError
from training.item_init import ROW_NORM, init_item_embeddings, svd_item_factors, training_matrix
from training.model import ListTransformer, ModelConfig

N_ITEMS = 40
HALF = 20  # items 0..19 are watched together, 20..39 together


def two_taste_lists(n_users: int = 120, seed: int = 0):
    """Each user takes 8 titles from one half of the catalogue; the last entry is held out. Item 0
    and item 20 are the most watched of their halves, the odd items of each half the least."""
    rng = np.random.default_rng(seed)
    weights = np.where(np.arange(HALF) % 2 == 0, 3.0, 1.0)
    weights[0] = 12.0
    items, labels, offsets = [], [], [0]
    for user in range(n_users):
        half = user % 2
        picked = rng.choice(HALF, 8, replace=False, p=weights / weights.sum()) + half * HALF
        items.append(picked)
        label = np.full(8, TRAIN)
        label[-1] = TEST
        labels.append(label)
        offsets.append(offsets[-1] + 8)
    return np.concatenate(items), np.concatenate(labels), np.array(offsets)


def test_svd_factors_put_titles_watched_together_close():
    items, labels, offsets = two_taste_lists()
    factors = svd_item_factors(training_matrix(items, labels, offsets, N_ITEMS), dim=4)
    unit = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    cosine = unit @ unit.T
    same = np.equal.outer(np.arange(N_ITEMS) < HALF, np.arange(N_ITEMS) < HALF)
    off_diagonal = ~np.eye(N_ITEMS, dtype=bool)
    assert cosine[same & off_diagonal].mean() > 0.5
    assert cosine[~same].mean() < 0.1
    assert np.linalg.norm(factors, axis=1).mean() == pytest.approx(ROW_NORM, rel=1e-4)


def test_only_training_interactions_shape_the_factors():
    items, labels, offsets = two_taste_lists()
    held_only = N_ITEMS  # an extra item that appears only as a held-out entry
    items = items.copy()
    test_rows = np.flatnonzero(labels == TEST)[:5]
    items[test_rows] = held_only
    factors = svd_item_factors(training_matrix(items, labels, offsets, N_ITEMS + 1), dim=4)
    assert np.allclose(factors[held_only], 0.0)
    assert np.abs(factors[:N_ITEMS]).sum() > 0


def test_the_tied_output_of_an_svd_start_ranks_a_users_half_first():
    """Before any training step, a state pointing where the user's titles point (the mean of their
    item vectors, at the final LayerNorm's scale) scores the user's own half of the catalogue above
    the other half through the model's tied output; from the random start it does not."""
    items, labels, offsets = two_taste_lists()
    cfg = ModelConfig(n_items=N_ITEMS, max_len=16, d_model=16, n_layers=1, n_heads=2)

    def own_half_in_top_10(method: str) -> int:
        torch.manual_seed(0)
        model = ListTransformer(cfg)
        init_item_embeddings(model, method, items, labels, offsets)
        model.eval()
        with torch.no_grad():
            state = model.item_vectors()[[2, 4, 6, 8]].mean(dim=0)  # first-half titles
            state = state / state.norm() * cfg.d_model**0.5
            logits = model.item_logits(state[None])[0]
        return int((torch.topk(logits, 10).indices < HALF).sum())

    svd, random = own_half_in_top_10("svd"), own_half_in_top_10("random")
    assert svd >= 9, (svd, random)
    assert random <= 7, (svd, random)


def test_the_output_bias_starts_at_log_popularity():
    items, labels, offsets = two_taste_lists()
    model = ListTransformer(ModelConfig(n_items=N_ITEMS, d_model=8, n_heads=2, n_layers=1))
    init_item_embeddings(model, "svd", items, labels, offsets)
    counts = np.bincount(items[labels == TRAIN], minlength=N_ITEMS)
    bias = model.item_bias.detach().numpy()
    assert np.argmax(bias) == np.argmax(counts)
    assert np.corrcoef(bias, np.log1p(counts))[0, 1] > 0.99


def test_an_unknown_init_is_a_config_error():
    items, labels, offsets = two_taste_lists(n_users=4)
    model = ListTransformer(ModelConfig(n_items=N_ITEMS, d_model=8, n_heads=2, n_layers=1))
    with pytest.raises(ConfigError, match="item_init"):
        init_item_embeddings(model, "glove", items, labels, offsets)


def test_pretrain_from_svd_start_runs(tmp_path):
    items, labels, offsets = two_taste_lists(n_users=48)
    path = tmp_path / "taste"
    arrays = {
        "items": items,
        "scores": np.full(len(items), 8),
        "statuses": np.ones(len(items), dtype=np.int64),
        "progress": np.zeros(len(items), dtype=np.int64),
        "times": np.full(len(items), -1),
    }
    write_lists(path, arrays, offsets, labels, name="taste", has_times=False, n_items=N_ITEMS)
    code = cli(
        [
            "pretrain",
            "--config",
            "training/configs/tiny.toml",
            "--set",
            f"data.path={path}",
            "--set",
            f"out_dir={tmp_path}",
            "--set",
            "model.item_init=svd",
            "--set",
            "train.epochs=1",
        ]
    )
    assert code == 0
    payload = torch.load(tmp_path / "tiny" / "ckpt.pt", weights_only=False)
    assert payload["model_config"]["item_init"] == "svd"
