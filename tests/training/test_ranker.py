import itertools

import numpy as np
import pytest
import torch

from training.dataset import History
from training.errors import ConfigError
from training.ranker import (
    UserCandidates,
    build_lists,
    candidate_tables,
    listmle_loss,
    position_weights,
)


def brute_listmle(scores, n_graded, weights):
    total = 0.0
    for i in range(n_graded):
        total += weights[i] * (np.log(np.exp(scores[i:]).sum()) - scores[i])
    return total


def test_listmle_matches_the_definition_with_negatives_only_in_denominators():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 7))
    valid = np.ones((3, 7), dtype=bool)
    valid[1, 5:] = False  # a shorter list: padding must not count
    n_graded = np.array([3, 2, 7])
    weights = position_weights(7, "log", top_k=10)
    loss, count = listmle_loss(
        torch.tensor(scores), torch.tensor(valid), torch.tensor(n_graded), torch.tensor(weights)
    )
    expected = sum(brute_listmle(scores[r][valid[r]], n_graded[r], weights) for r in range(3))
    assert abs(loss.item() - expected) < 1e-5
    assert count.item() == n_graded.sum()


def test_listmle_prefers_the_graded_order():
    weights = torch.tensor(position_weights(4, "log", 10))
    valid = torch.ones(1, 4, dtype=torch.bool)
    n = torch.tensor([3])
    losses = {
        perm: listmle_loss(torch.tensor([list(perm)]).float(), valid, n, weights)[0].item()
        for perm in itertools.permutations([3.0, 2.0, 1.0, 0.0])
    }
    assert min(losses, key=losses.get) == (3.0, 2.0, 1.0, 0.0)


def test_position_weights_decrease_and_truncate():
    w = position_weights(6, "log", top_k=3)
    assert w[0] == 1.0 and w[0] > w[1] > w[2] > 0 and (w[3:] == 0).all()
    e = position_weights(6, "exp", top_k=4)
    assert (np.diff(e[:4]) < 0).all() and (e[4:] == 0).all()


def test_ranker_trains_on_finetuned_outputs_and_plugs_into_evaluate(tmp_path):
    import argparse

    from tests.training.tiny_data import N_ITEMS, planted_dataset
    from training import ranker
    from training.baselines.interface import ranking_model
    from training.batches import UserParts
    from training.dataset import Dataset
    from training.finetune import FinetuneConfig, FinetuneJob
    from training.model import ListTransformer
    from training.train import Dist, fit, load_checkpoint, load_config

    data = planted_dataset(tmp_path / "planted")
    parts = UserParts(Dataset(data), "loo")
    cfg = load_config(
        FinetuneConfig,
        "training/configs/tiny.toml",
        [f"out_dir={tmp_path}", "name=ft", "train.epochs=1", "train.val_users=0"],
    )
    cfg.model.n_items = N_ITEMS
    fit(
        cfg,
        ListTransformer(cfg.model),
        FinetuneJob(cfg, parts, None),
        Dist(0, 1, torch.device("cpu")),
    )
    args = argparse.Namespace(
        config="training/configs/tiny.toml",
        device="cpu",
        resume=False,
        overrides=[
            f"data.path={data}",
            f"out_dir={tmp_path}",
            "name=rk",
            "train.epochs=2",
            "train.batch_size=8",
            f"ranker.finetuned={tmp_path}/ft/ckpt.pt",
            "ranker.candidates=8",
            "ranker.negatives=4",
            "ranker.holdout_users=0.25",
        ],
    )
    # tiny.toml's [model] section is not a ranker key: the ranker refuses it.
    with pytest.raises(ConfigError, match="unknown key"):
        ranker.main(args)
    (tmp_path / "rk.toml").write_text("[train]\nval_users = 8\n")
    args.config = str(tmp_path / "rk.toml")
    assert ranker.main(args) == 0
    ckpt = load_checkpoint(tmp_path / "rk" / "ckpt.pt")
    assert ckpt["kind"] == "ranker" and len(ckpt["state"]["history"]) == 2
    assert "val_base_NDCG@10" in ckpt["state"]["history"][-1]
    assert (
        "val_RMSE" in ckpt["state"]["history"][-1] and "loss_score" in ckpt["state"]["history"][-1]
    )

    model = ranking_model("ours").factory(f"ft={tmp_path}/ft/ckpt.pt+ranker={tmp_path}/rk/ckpt.pt")
    from training.baselines.interface import TrainData, history_matrix

    histories = [parts.part(u) for u in range(4)]
    model.fit(TrainData(history_matrix(histories, N_ITEMS), histories, N_ITEMS, True))
    scores = model.score(np.arange(4), histories)
    # The score head: one prediction per (user, item) asked, on the 1-10 scale, its own numbers.
    users, items = np.array([0, 0, 2, 3]), np.array([5, 9, 1, 5])
    asked = [histories[u] for u in users]
    predicted = model.predict(users, items, asked)
    assert predicted.shape == (4,) and ((predicted >= 1) & (predicted <= 10)).all()
    encoder = ranking_model("ours").factory(f"{tmp_path}/ft/ckpt.pt")
    encoder.fit(TrainData(history_matrix(histories, N_ITEMS), histories, N_ITEMS, True))
    assert not np.allclose(predicted, encoder.predict(users, items, asked))
    assert scores.shape == (4, N_ITEMS) and scores.dtype == np.float32
    # The ranker's candidates (8 by watch logit joined by 8 by neighbour score and 8 by transition
    # score) outrank everything it was not asked about.
    tables, _ = candidate_tables(
        model.model, histories, has_times=True, episodes=None, facts=model.facts, n_candidates=8
    )
    assert any(len(t.items) > 8 for t in tables), "the neighbours proposed no candidates"
    for row, (history, table) in enumerate(zip(histories, tables, strict=True)):
        assert 8 <= len(table.items) <= 24
        unseen = np.setdiff1d(np.arange(N_ITEMS), history.items)
        best = unseen[np.argsort(-scores[row, unseen])]
        assert set(best[: len(table.items)]) == set(table.items.tolist())
        if len(table.items) < len(unseen):  # the three stages together can propose every item
            assert (
                scores[row, best[len(table.items) - 1]] > scores[row, best[len(table.items)]] + 1e5
            )


def _held(items, scores):
    n = len(items)
    return History(
        items=np.array(items, dtype=np.int32),
        scores=np.array(scores, dtype=np.int8),
        statuses=np.full(n, 2, dtype=np.int8),
        times=np.zeros(n, dtype=np.int64),
        progress=np.zeros(n, dtype=np.int32),
    )


def test_lists_keep_users_whose_held_out_items_are_not_candidates_when_scored():
    def table(items, asked):
        features = np.zeros((len(items), 3), dtype=np.float32)
        asked = np.array(asked, dtype=np.int64)
        return UserCandidates(
            np.array(items), features, asked, np.zeros((len(asked), 2), dtype=np.float32)
        )

    tables = [table([1, 2, 3], [2]), table([1, 2, 3], [7]), table([1, 2, 3], [])]
    held = [_held([2], [8]), _held([7], [6]), _held([9], [0])]
    lists = build_lists(tables, held, [np.array([8]), np.array([6]), np.array([1])])
    # User 1's held-out item is a candidate; user 2's is not but its score teaches the score head
    # (and counts as a miss in the check); user 3 has nothing to learn from.
    assert len(lists) == 2
    assert lists[0].graded_rows.tolist() == [1] and lists[0].score_targets.tolist() == [8.0]
    assert lists[1].graded_rows.tolist() == [] and lists[1].score_targets.tolist() == [6.0]
    assert lists[1].negative_rows.tolist() == [0, 1, 2]
