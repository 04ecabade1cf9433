"""Our trained models and SASRec as `evaluate` plug-ins (training happens in the train commands;
`fit` only loads a checkpoint).

    --models sasrec:runs/sasrec/ckpt.pt
    --models ours:runs/ft/ckpt.pt                                   fine-tuned watch logits
    --models ours:ft=runs/ft/ckpt.pt+ranker=runs/ranker/ckpt.pt     the ranker over its candidates
                                                                    (item-item neighbours refitted
                                                                    on the run's training data)
    --score-models bias,ours:runs/ft/ckpt.pt                        the score head, for RMSE
    --score-models ours:ft=runs/ft/ckpt.pt+ranker=runs/ranker/ckpt.pt  the ranker's score head

As score models they also give the status head's probabilities (drop and plan-to-watch AUCs); the
ranker has no status head, so `ours:ft=...+ranker=...` reports its fine-tuned model's (the drop
probability the bundle serves).

The histories the harness passes are encoded exactly as in training and serving; "now" is each
history's last entry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from inference.encoding import N_ABSOLUTE_FEATURES, N_RANKER_FEATURES, N_SCORE_FEATURES
from training.baselines.interface import (
    TrainData,
    parse_params,
    register_model,
    register_score_model,
    reject_leftovers,
)
from training.batches import load_episodes
from training.dataset import History
from training.errors import TrainingError
from training.model import ListTransformer, ModelConfig
from training.scoring import entry_predictions, status_softmax, user_states, watch_logits
from training.train import load_checkpoint

BELOW_CANDIDATES = 1e6  # items the ranker did not see go below every candidate, in logit order


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _load(path: str, kinds: tuple[str, ...]) -> tuple[ListTransformer, dict]:
    payload = load_checkpoint(path)
    if payload.get("kind") not in kinds:
        raise TrainingError(
            f"{path} is a {payload.get('kind')} checkpoint; expected {'/'.join(kinds)}"
        )
    model = ListTransformer(ModelConfig(**payload["model_config"]))
    model.load_state_dict(payload["model"])
    return model.to(_device()).eval(), payload


class TransformerRecommender:
    """SASRec or our fine-tuned model: scores = watch logits of each history."""

    def __init__(self, path: str | None, name: str, kinds: tuple[str, ...]) -> None:
        if not path:
            raise TrainingError(f"{name} needs a checkpoint: --models {name}:runs/<run>/ckpt.pt")
        self.path = path
        self.name = name
        self.kind = "baseline" if name == "sasrec" else "ours"
        self.kinds = kinds
        self.model: ListTransformer | None = None
        self.has_times = True
        self.episodes: np.ndarray | None = None

    def fit(self, data: TrainData) -> None:
        self.model, payload = _load(self.path, self.kinds)
        if payload["n_items"] != data.n_items:
            raise TrainingError(
                f"{self.path} has {payload['n_items']} items, the data {data.n_items}"
            )
        self.has_times = data.has_times
        self.episodes = load_episodes(payload.get("catalog", ""), data.n_items)

    def _states(self, histories: list[History]) -> torch.Tensor:
        assert self.model is not None, "fit() first"
        return user_states(
            self.model,
            histories,
            has_times=self.has_times,
            episodes=self.episodes,
            device=_device(),
        )

    def score(self, users: np.ndarray, histories: list[History]) -> np.ndarray:
        assert self.model is not None, "fit() first"
        return watch_logits(self.model, self._states(histories))

    def predict(self, users: np.ndarray, items: np.ndarray, histories: list[History]) -> np.ndarray:
        assert self.model is not None, "fit() first"
        # One state per user, however many of their entries are asked about.
        _, first, rows = np.unique(users, return_index=True, return_inverse=True)
        states = self._states([histories[i] for i in first])
        scores, _ = entry_predictions(self.model, states, rows.reshape(-1), items)
        return scores

    def status_probabilities(
        self,
        users: np.ndarray,
        items: np.ndarray,
        histories: list[History],
        codes: Sequence[int],
    ) -> np.ndarray:
        """The status head's softmax, at the asked codes (what `predict` reads the score from)."""
        assert self.model is not None, "fit() first"
        if not self.model.cfg.entry_head:
            raise TrainingError(f"{self.path} has no status head")
        _, first, rows = np.unique(users, return_index=True, return_inverse=True)
        states = self._states([histories[i] for i in first])
        probabilities = status_softmax(self.model, states, rows.reshape(-1), items)
        return probabilities[:, np.asarray(codes, dtype=np.int64)]


class RankedRecommender(TransformerRecommender):
    """The ranker's utility over the fine-tuned model's top candidates."""

    def __init__(self, finetuned: str, ranker: str) -> None:
        super().__init__(finetuned, "ours+ranker", ("finetune", "pretrain"))
        self.ranker_path = ranker

    def fit(self, data: TrainData) -> None:
        from training.ranker import RankerNet, RankerNetConfig, refit_facts

        super().fit(data)
        payload = load_checkpoint(self.ranker_path)
        if payload.get("kind") != "ranker":
            raise TrainingError(f"{self.ranker_path} is not a ranker checkpoint")
        config = RankerNetConfig(**payload["model_config"])
        if config.n_features not in (N_ABSOLUTE_FEATURES, N_RANKER_FEATURES):
            raise TrainingError(
                f"{self.ranker_path} reads {config.n_features} features, this code computes "
                f"{N_ABSOLUTE_FEATURES} absolute and {N_RANKER_FEATURES} in all: train the "
                "ranker again"
            )
        self.ranker = RankerNet(config)
        self.ranker.load_state_dict(payload["model"])
        self.ranker.to(_device()).eval()
        # Like the baselines, the data-derived facts are refitted on what this run may learn from
        # (train + validation for the test run); the ranker's weights stay as trained.
        lengths = [len(h) for h in data.histories]
        self.facts = refit_facts(
            payload,
            np.repeat(np.arange(len(lengths)), lengths),
            np.concatenate([h.items for h in data.histories]),
            np.concatenate([h.scores for h in data.histories]),
            n_items=data.n_items,
            has_times=data.has_times,
        )
        self.candidates = int(payload["candidates"])

    def score(self, users: np.ndarray, histories: list[History]) -> np.ndarray:
        from training.ranker import candidate_tables

        assert self.model is not None, "fit() first"
        tables, logits = candidate_tables(
            self.model,
            histories,
            has_times=self.has_times,
            episodes=self.episodes,
            facts=self.facts,
            n_candidates=self.candidates,
            device=_device(),
        )
        out = logits.astype(np.float32) - BELOW_CANDIDATES
        no_scores = torch.zeros((0, N_SCORE_FEATURES), device=_device())
        for row, table in enumerate(tables):
            with torch.no_grad():
                features = torch.from_numpy(table.features).to(_device())
                utilities, _ = self.ranker(features, no_scores)
            out[row, table.items] = utilities.float().cpu().numpy()
        return out

    def predict(self, users: np.ndarray, items: np.ndarray, histories: list[History]) -> np.ndarray:
        """The ranker's score head (the score the bundle shows)."""
        from training.ranker import candidate_tables

        assert self.model is not None, "fit() first"
        firsts, rows = np.unique(users, return_inverse=True)
        rows = rows.reshape(-1)
        asked = [np.asarray(items)[rows == r] for r in range(len(firsts))]
        first_index = {int(u): i for i, u in enumerate(users)}
        tables, _ = candidate_tables(
            self.model,
            [histories[first_index[int(u)]] for u in firsts],
            has_times=self.has_times,
            episodes=self.episodes,
            facts=self.facts,
            n_candidates=0,
            score_items=asked,
            device=_device(),
        )
        out = np.zeros(len(items), dtype=np.float32)
        no_candidates = torch.zeros((0, N_RANKER_FEATURES), device=_device())
        for r, table in enumerate(tables):
            with torch.no_grad():
                _, scores = self.ranker(
                    no_candidates, torch.from_numpy(table.score_features).to(_device())
                )
            out[rows == r] = scores.float().clamp(1.0, 10.0).cpu().numpy()
        return out


def _ours(arg: str | None) -> TransformerRecommender:
    if arg and "=" in arg:
        params = parse_params(arg, "ft")
        finetuned, ranker = params.pop("ft", ""), params.pop("ranker", "")
        reject_leftovers("ours", params)
        if ranker:
            return RankedRecommender(finetuned, ranker)
        arg = finetuned
    return TransformerRecommender(arg, "ours", ("finetune", "pretrain"))


register_model("sasrec", lambda arg: TransformerRecommender(arg, "sasrec", ("sasrec",)))
register_model("ours", _ours)
register_score_model("ours", _ours)
