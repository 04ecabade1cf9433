from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.__main__ import main as cli
from training.dataset import TEST, TRAIN, VALIDATION, History, write_dataset, write_split
from training.evaluate import TrainData, register_model

N_ITEMS = 10


def write_chain_dataset(path: Path, n_users: int = 40, unlisted_titles: int = 0) -> None:
    """Timed data where each user walks the cycle u, u+1, ... (mod N_ITEMS); `loo` split. The
    vocabulary may hold `unlisted_titles` more items that no one has."""
    items, offsets, labels = [], [0], []
    for user in range(n_users):
        sequence = [(user + j) % N_ITEMS for j in range(6)]
        items += sequence
        offsets.append(offsets[-1] + len(sequence))
        labels += [TRAIN] * 4 + [VALIDATION, TEST]
    n = len(items)
    arrays = {
        "items": np.array(items),
        "scores": np.tile([8, 0, 6, 7, 9, 5], n_users),
        "statuses": np.ones(n),
        "progress": np.zeros(n),
        "times": np.arange(n),
    }
    meta = {"name": "chain", "has_times": True}
    keys = list(range(N_ITEMS + unlisted_titles))
    write_dataset(path, arrays, np.array(offsets), keys, np.arange(n_users), meta)
    write_split(path, "loo", np.array(labels))


def write_untimed_dataset(path: Path, n_users: int = 60, n_items: int = 20) -> None:
    """Untimed, scored data in two taste groups; `random` split with 2 test + 1 validation each."""
    rng = np.random.default_rng(0)
    items, scores, offsets, labels = [], [], [0], []
    for user in range(n_users):
        base = 0 if user % 2 == 0 else n_items // 2
        chosen = rng.choice(n_items // 2, size=7, replace=False) + base
        items += chosen.tolist()
        scores += rng.integers(0, 11, size=7).tolist()
        offsets.append(offsets[-1] + 7)
        user_labels = [TRAIN] * 7
        for position, label in zip(
            rng.choice(7, size=3, replace=False), (TEST, TEST, VALIDATION), strict=True
        ):
            user_labels[position] = label
        labels += user_labels
    n = len(items)
    arrays = {
        "items": np.array(items),
        "scores": np.array(scores),
        "statuses": np.ones(n),
        "progress": np.zeros(n),
        "times": np.full(n, -1),
    }
    meta = {"name": "untimed", "has_times": False}
    write_dataset(path, arrays, np.array(offsets), list(range(n_items)), np.arange(n_users), meta)
    write_split(path, "random", np.array(labels))


class NextInCycle:
    """Scores the true next item of the chain 10, and (optionally) the history items 1000."""

    kind = "ours"

    def __init__(self, seen_first: bool, reverse: bool = False) -> None:
        self.seen_first, self.reverse = seen_first, reverse
        self.name = "next-in-cycle"
        self.fitted_users = 0

    def fit(self, data: TrainData) -> None:
        self.fitted_users = data.n_users

    def score(self, users: np.ndarray, histories: list[History]) -> np.ndarray:
        out = np.zeros((len(users), N_ITEMS), dtype=np.float32)
        for row, history in enumerate(histories):
            nxt = (int(history.items[-1]) + 1) % N_ITEMS
            out[row, nxt] = -10.0 if self.reverse else 10.0
            if self.seen_first:
                out[row, history.items] = 1000.0
        return out


received_args: list[str | None] = []


def _next_factory(arg: str | None) -> NextInCycle:
    received_args.append(arg)
    return NextInCycle(seen_first=arg == "seen", reverse=arg == "bad")


register_model("nextcycle", _next_factory, grid=("bad", "good"))


def run_cli(*argv: str) -> int:
    return cli(["evaluate", *argv])


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    write_chain_dataset(tmp_path / "chain")
    return tmp_path / "chain"


def test_results_file_has_the_design_shape(chain: Path, tmp_path: Path) -> None:
    out = tmp_path / "res" / "chain.json"
    assert (
        run_cli(
            "--data",
            str(chain),
            "--protocol",
            "loo",
            "--models",
            "popularity,markov",
            "--k",
            "1,5",
            "--out",
            str(out),
        )
        == 0
    )
    results = read(out)
    assert results["dataset"] == "chain" and results["protocol"] == "loo"
    assert results["command"].startswith("python -m training evaluate --data ")
    assert [row["model"] for row in results["rows"]] == ["popularity", "markov"]
    for row in results["rows"]:
        assert row["kind"] == "baseline"
        assert set(row["metrics"]) == {"HR@1", "NDCG@1", "HR@5", "NDCG@5"}
        assert all(isinstance(v, float) for v in row["metrics"].values())
    # Every chain step is a training transition, so Markov puts the test item first.
    markov = results["rows"][1]["metrics"]
    assert markov["HR@1"] == 1.0 and markov["NDCG@5"] == 1.0
    markdown = out.with_suffix(".md").read_text()
    assert "| markov | baseline |" in markdown and results["command"] in markdown


def test_history_items_are_removed_before_ranking(chain: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert (
        run_cli(
            "--data",
            str(chain),
            "--protocol",
            "loo",
            "--models",
            "nextcycle:seen",
            "--k",
            "1",
            "--out",
            str(out),
        )
        == 0
    )
    row = read(out)["rows"][0]
    assert row["kind"] == "ours" and row["model"] == "nextcycle:seen"
    # The model puts the 5 history items above the target; the harness must drop them.
    assert row["metrics"]["HR@1"] == 1.0


def test_plugin_gets_its_argument_and_grid_tuning_picks_the_validation_winner(
    chain: Path, tmp_path: Path
) -> None:
    received_args.clear()
    out = tmp_path / "r.json"
    assert (
        run_cli(
            "--data",
            str(chain),
            "--protocol",
            "loo",
            "--models",
            "nextcycle",
            "--k",
            "1",
            "--out",
            str(out),
        )
        == 0
    )
    row = read(out)["rows"][0]
    assert received_args == ["bad", "good", "good"]
    assert row["params"] == "good"
    assert [t["params"] for t in row["tuning"]] == ["bad", "good"]
    assert row["tuning"][0]["NDCG@1"] == 0.0 and row["tuning"][1]["NDCG@1"] == 1.0


def test_append_merges_rows_and_refuses_another_protocol(chain: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    base = ["--data", str(chain), "--protocol", "loo", "--k", "1", "--out", str(out)]
    assert run_cli(*base, "--models", "popularity,markov") == 0
    assert run_cli(*base, "--models", "nextcycle:good,popularity", "--append") == 0
    results = read(out)
    assert [row["model"] for row in results["rows"]] == ["markov", "nextcycle:good", "popularity"]
    assert len(results["commands"]) == 2
    assert "nextcycle:good" in out.with_suffix(".md").read_text()
    write_split(chain, "random", np.zeros(240))
    assert (
        run_cli(
            "--data",
            str(chain),
            "--protocol",
            "random",
            "--models",
            "popularity",
            "--out",
            str(out),
            "--append",
            "--no-tune",
        )
        == 2
    )
    assert len(read(out)["rows"]) == 3


def test_runs_are_deterministic(chain: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    models = "itemknn,ease,ials:factors=3+iterations=3"
    for out in (first, second):
        assert (
            run_cli(
                "--data",
                str(chain),
                "--protocol",
                "loo",
                "--models",
                models,
                "--k",
                "1,3",
                "--out",
                str(out),
            )
            == 0
        )
    rows_a, rows_b = read(first)["rows"], read(second)["rows"]
    assert [r["metrics"] for r in rows_a] == [r["metrics"] for r in rows_b]
    assert [r["params"] for r in rows_a] == [r["params"] for r in rows_b]


def test_random_protocol_reports_recall_graded_ndcg_and_rmse(tmp_path: Path) -> None:
    data = tmp_path / "untimed"
    write_untimed_dataset(data)
    out = tmp_path / "u.json"
    assert (
        run_cli(
            "--data",
            str(data),
            "--protocol",
            "random",
            "--models",
            "popularity,itemknn:5,ease:10,ials:factors=4+iterations=4,markov",
            "--score-models",
            "bias:3,mf:factors=2+iterations=3",
            "--out",
            str(out),
        )
        == 0
    )
    results = read(out)
    rows = {row["model"]: row for row in results["rows"]}
    assert "markov" not in rows
    assert any(note.startswith("markov skipped") for note in results["notes"])
    assert set(rows["ease:10"]["metrics"]) == {
        "Recall@10",
        "NDCG@10",
        "Recall@20",
        "NDCG@20",
        "NDCG@10-graded",
    }
    # Two disjoint taste groups: item models rank within the group, so they beat popularity.
    assert rows["ease:10"]["metrics"]["Recall@10"] > rows["popularity"]["metrics"]["Recall@10"]
    assert rows["bias:3"]["metrics"]["RMSE/bias"] == 1.0
    assert rows["mf:factors=2+iterations=3"]["metrics"]["RMSE"] > 0
    assert rows["bias:3"]["n_scored"] > 0


def test_bad_input_is_a_clean_error(chain: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    assert (
        run_cli(
            "--data", str(chain), "--protocol", "loo", "--models", "nosuchmodel", "--out", str(out)
        )
        == 2
    )
    assert "unknown ranking model 'nosuchmodel'" in capsys.readouterr().err
    assert (
        run_cli(
            "--data",
            str(tmp_path / "missing"),
            "--protocol",
            "loo",
            "--models",
            "popularity",
            "--out",
            str(out),
        )
        == 2
    )
    assert "not a built dataset" in capsys.readouterr().err
    assert (
        run_cli(
            "--data",
            str(chain),
            "--protocol",
            "temporal",
            "--models",
            "popularity",
            "--out",
            str(out),
        )
        == 2
    )
    assert "no split 'temporal'" in capsys.readouterr().err
    assert (
        run_cli(
            "--data", str(chain), "--protocol", "loo", "--models", "ease:abc", "--out", str(out)
        )
        == 2
    )
    assert "must be a number" in capsys.readouterr().err
    assert not out.exists()


def test_max_users_evaluates_a_seeded_sample(chain: Path, tmp_path: Path) -> None:
    outs = [tmp_path / f"{name}.json" for name in ("a", "b")]
    for out in outs:
        assert (
            run_cli(
                "--data",
                str(chain),
                "--protocol",
                "loo",
                "--models",
                "popularity",
                "--max-users",
                "7",
                "--seed",
                "3",
                "--out",
                str(out),
            )
            == 0
        )
    first, second = (read(out) for out in outs)
    assert first["n_users"] == 7 and first["rows"][0]["n_users"] == 7
    assert first["rows"][0]["metrics"] == second["rows"][0]["metrics"]
    assert "--max-users 7 --seed 3" in first["command"]


class NextOrUnlisted:
    """Scores the true next item of the chain 10 and every vocabulary item past the chain's 1000."""

    kind = "ours"
    name = "next-or-unlisted"

    def fit(self, data: TrainData) -> None:
        self.n_items = data.n_items

    def score(self, users: np.ndarray, histories: list[History]) -> np.ndarray:
        out = np.zeros((len(users), self.n_items), dtype=np.float32)
        out[:, N_ITEMS:] = 1000.0
        for row, history in enumerate(histories):
            out[row, (int(history.items[-1]) + 1) % N_ITEMS] = 10.0
        return out


register_model("nextorunlisted", lambda arg: NextOrUnlisted())


def test_titles_no_one_listed_are_never_ranked(tmp_path: Path) -> None:
    """A vocabulary that also holds catalogue titles absent from the data: they can never be a
    target, so a model that scores them (ours can, through content) is not charged for them."""
    path = tmp_path / "chain"
    write_chain_dataset(path, unlisted_titles=3)
    out = tmp_path / "r.json"
    args = ("--data", str(path), "--protocol", "loo", "--models", "nextorunlisted", "--k", "1")
    assert run_cli(*args, "--out", str(out)) == 0
    assert read(out)["rows"][0]["metrics"]["HR@1"] == 1.0
