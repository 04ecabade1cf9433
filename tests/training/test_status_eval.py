"""The status heads in `evaluate`: drop / plan-to-watch ROC AUC of ours and of `statusrate`."""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.test_evaluate import write_chain_dataset
from tests.training.tiny_data import DROPPED, N_ITEMS, drop_taste_dataset
from training.__main__ import main as cli
from training.baselines.statuses import STATUS_GRID, StatusRate
from training.batches import UserParts
from training.dataset import TEST, Dataset
from training.finetune import FinetuneConfig, FinetuneJob
from training.model import ListTransformer
from training.train import Dist, fit, load_config


def evaluate(*argv: str) -> dict:
    out = Path(argv[argv.index("--out") + 1])
    assert cli(["evaluate", *argv]) == 0
    return json.loads(out.read_text())


def pairwise_auc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Every (positive, negative) pair, one by one: 1 if the positive is higher, 1/2 if tied."""
    wins = 0.0
    for p, n in product(scores[positives], scores[~positives]):
        wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (positives.sum() * (~positives).sum())


def statusrate_by_hand(path: Path, m: float) -> tuple[np.ndarray, np.ndarray]:
    """The `statusrate` formula written out for the drop status, over the `loo` test entries:
    (predicted drop probabilities, whether each entry was dropped)."""
    data = Dataset(path)
    labels = np.asarray(data.split("loo"))
    items, statuses = np.asarray(data.items), np.asarray(data.statuses)
    offsets = np.asarray(data.offsets)
    fit_part = labels != TEST
    p = (statuses[fit_part] == DROPPED).mean()

    def rate(dropped: int, total: int) -> float:
        return (dropped + m * p) / (total + m)

    def logit(x: float) -> float:
        return float(np.log(x / (1 - x)))

    predicted, actual = [], []
    for user in range(data.n_users):
        lo, hi = offsets[user], offsets[user + 1]
        history = np.arange(lo, hi)[fit_part[lo:hi]]
        user_rate = rate(int((statuses[history] == DROPPED).sum()), len(history))
        for row in np.arange(lo, hi)[~fit_part[lo:hi]]:
            if items[row] in items[history]:
                continue  # unrankable: not a target
            of_item = fit_part & (items == items[row])
            item_rate = rate(int((statuses[of_item] == DROPPED).sum()), int(of_item.sum()))
            z = logit(item_rate) + logit(user_rate) - logit(p)
            predicted.append(1 / (1 + np.exp(-z)))
            actual.append(statuses[row] == DROPPED)
    return np.round(np.array(predicted), 12), np.array(actual)


@pytest.fixture(scope="module")
def drop_taste(tmp_path_factory) -> tuple[Path, Path]:
    """The planted dataset and a tiny model fine-tuned on it with the status loss on."""
    root = tmp_path_factory.mktemp("status")
    data = drop_taste_dataset(root / "drop-taste")
    cfg = load_config(
        FinetuneConfig,
        "training/configs/tiny.toml",
        [
            f"out_dir={root}",
            "name=ft",
            "train.epochs=5",
            "train.lr=0.01",
            "train.val_users=0",
            "finetune.cuts_per_user=8",
            "finetune.score_weight=0.1",
            "finetune.status_weight=3.0",
        ],
    )
    cfg.model.n_items = N_ITEMS
    torch.manual_seed(0)
    fit(
        cfg,
        ListTransformer(cfg.model),
        FinetuneJob(cfg, UserParts(Dataset(data), "loo"), None),
        Dist(0, 1, torch.device("cpu")),
    )
    return data, root / "ft" / "ckpt.pt"


def test_trained_model_reads_drops_from_the_history_and_the_baseline_is_computed_right(
    drop_taste: tuple[Path, Path], tmp_path: Path
) -> None:
    data, ckpt = drop_taste
    out = tmp_path / "status.json"
    results = evaluate(
        "--data",
        str(data),
        "--protocol",
        "loo",
        "--score-models",
        f"bias,statusrate,ours:{ckpt}",
        "--out",
        str(out),
    )
    rows = {row["model"].split(":")[0]: row for row in results["rows"]}
    ours, rate, bias = rows["ours"], rows["statusrate"], rows["bias"]
    # Whether an item is dropped depends on the user's group, which only the history's statuses
    # tell: the model reads it, per-item and per-user rates cannot.
    assert ours["metrics"]["drop AUC"] > 0.85
    assert ours["metrics"]["drop AUC"] > rate["metrics"]["drop AUC"] + 0.2
    assert "RMSE" in ours["metrics"] and ours["n_status"] == rate["n_status"]  # the same entries
    # No entry is plan-to-watch: its AUC is undefined and left empty.
    assert ours["metrics"]["plan AUC"] is None and rate["metrics"]["plan AUC"] is None
    assert ours["n_status"]["plan_to_watch"] == 0
    # The baseline's figure is its formula's, by hand, with pairs counted one by one.
    assert rate["params"] in STATUS_GRID and [t["params"] for t in rate["tuning"]] == list(
        STATUS_GRID
    )
    predicted, dropped = statusrate_by_hand(data, float(rate["params"]))
    assert rate["n_status"] == {
        "entries": len(dropped),
        "dropped": int(dropped.sum()),
        "plan_to_watch": 0,
    }
    assert rate["metrics"]["drop AUC"] == pytest.approx(pairwise_auc(predicted, dropped), abs=1e-9)
    assert "RMSE" not in rate["metrics"] and "n_scored" not in rate
    # A score model without a status head has no status columns; the table shows them empty.
    assert set(bias["metrics"]) == {"RMSE", "RMSE/bias"}
    table = out.with_suffix(".md").read_text()
    assert "| drop AUC | plan AUC |" in table
    assert f"| statusrate | baseline | {rate['params']} | – | – | " in table


def test_status_aucs_are_empty_when_every_entry_is_completed(tmp_path: Path) -> None:
    write_chain_dataset(tmp_path / "chain")  # every status is "completed"
    out = tmp_path / "r.json"
    results = evaluate(
        "--data",
        str(tmp_path / "chain"),
        "--protocol",
        "loo",
        "--score-models",
        "statusrate",
        "--out",
        str(out),
    )
    row = results["rows"][0]
    assert row["metrics"] == {"drop AUC": None, "plan AUC": None}
    assert row["n_status"] == {"entries": 40, "dropped": 0, "plan_to_watch": 0}
    assert "| statusrate | baseline | 3 | – | – |" in out.with_suffix(".md").read_text()


def test_statusrate_blends_the_item_and_user_rates() -> None:
    """Hand-computed: overall drop share 1/4, m = 2; the item drops 2 of 2, the user 0 of 2."""
    from training.baselines.interface import TrainData, history_matrix
    from training.dataset import History

    def history(items: list[int], statuses: list[int]) -> History:
        n = len(items)
        zeros = np.zeros(n, dtype=np.int64)
        return History(np.array(items), zeros, np.array(statuses), zeros, zeros)

    histories = [history([0, 1], [DROPPED, 1]), history([0, 2], [DROPPED, 1]), history([1], [1])]
    histories.append(history([2, 3, 3], [1, 1, 1]))
    train = TrainData(history_matrix(histories, 4), histories, 4, True)
    model = StatusRate(2.0)
    model.fit(train)
    asking = history([1, 2], [1, 1])
    got = model.status_probabilities(np.array([7]), np.array([0]), [asking], [DROPPED, 1])
    p = 2 / 8
    item, user = (2 + 2 * p) / (2 + 2), (0 + 2 * p) / (2 + 2)
    odds = (item / (1 - item)) * (user / (1 - user)) / (p / (1 - p))
    assert got.shape == (1, 2)
    assert got[0, 0] == pytest.approx(odds / (1 + odds))
