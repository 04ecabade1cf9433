"""`python -m training ranker --config X.toml`: the listwise ranker over the fine-tuned model.

For each user with validation items, the fine-tuned model (fed the training part) proposes its top
`candidates` unseen items, and item-item neighbours (a sparse EASE fitted on the training part,
`training.neighbours`) and, on time-ordered data, transition counts from the newest entries propose
theirs; each candidate gets the features of
`inference.encoding.ranker_features` (only candidates: serving never scores anything else). A small
MLP scores them, trained with position-aware ListMLE (docs/model.md#listwise-loss): the held-out items among them in
grade order (score, then status; ties shuffled every epoch) on top, `negatives` sampled unwatched
candidates below them, which only widen the denominators.
Its score is the utility the re-ranker trades off. A share of the users is kept out to check, each
epoch, that the ranker orders their held-out items better than the fine-tuned logits alone.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from inference.encoding import (
    N_ABSOLUTE_FEATURES,
    N_RANKER_FEATURES,
    N_SCORE_FEATURES,
    RANKER_FEATURES,
    EntryArrays,
    ItemFacts,
    ranker_features,
    score_features,
    select_candidates,
)
from training.batches import UserParts, global_batches, load_episodes, n_steps
from training.dataset import TRAIN, VALIDATION, Dataset
from training.metrics import ndcg_at_k, recall_at_k
from training.model import ListTransformer, ModelConfig
from training.neighbours import (
    binary_matrix,
    fit_neighbours,
    fit_transitions,
    top_transitions,
    with_neighbours,
)
from training.pretrain import run_command
from training.scoring import entry_predictions, user_states, watch_logits
from training.train import (
    Batch,
    ConfigError,
    DataConfig,
    Dist,
    Losses,
    TrainConfig,
    add_common_args,
    fit,
    load_checkpoint,
    load_config,
    rank_slice,
)

NEIGHBOUR_SCORE = RANKER_FEATURES.index("neighbour_score")
SCORE_CENTRE, SCORE_SCALE = 7.0, 2.0  # score features are centred as (score - 7) / 2
MAX_GRADED = 50  # held-out items per list (the rest of a huge hold-out adds little)
STATUS_RANK = {1: 4, 0: 3, 5: 3, 2: 2, 4: 1, 3: 0}  # completed > watching/rewatch > ... > dropped


@dataclass
class RankerSettings:
    finetuned: str = ""  # the fine-tuned checkpoint whose outputs are the features
    candidates: int = 100
    negatives: int = 50
    hidden: int = 64
    alpha: str = "log"  # position weights: "log" 1/log2(1+i), "exp" 2^(n-i) - 1
    top_k: int = 10  # only the first top_k graded positions carry weight
    holdout_users: float = 0.1  # share of users kept out for the per-epoch check
    grading: str = "score"  # held-out order: "score" (score, then status) or "binary" (all alike)
    neighbours: int = 64  # item-item (EASE) weights kept per item; 0 = no neighbour features
    neighbour_lambda: float = 100.0  # EASE's λ (the anime validation split peaks near 100)
    transitions: int = 64  # items kept per item of the transition counts (time-ordered data only)
    # Read the list-relative columns too (docs/model.md#list-relative-features). Off by default:
    # "because you liked" then stays exact (a variant's statistics are approximated at serving).
    list_relative: bool = False


@dataclass
class RankerConfig:
    name: str = "ranker"
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ranker: RankerSettings = field(default_factory=RankerSettings)

    @property
    def run_dir(self) -> Any:
        from pathlib import Path

        return Path(self.out_dir) / self.name


@dataclass
class RankerNetConfig:
    n_features: int = N_RANKER_FEATURES
    hidden: int = 64
    n_score_features: int = N_SCORE_FEATURES


class RankerNet(nn.Module):
    """MLP over candidate features plus a skip on the watch log-probability, so that training
    starts from the fine-tuned model's own order and learns corrections to it.

    A second, separate head predicts the score a user would give (the second output, over
    `inference.encoding.score_features`), starting from the encoder's own prediction the same way.
    """

    def __init__(self, cfg: RankerNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_features, cfg.hidden),
            nn.GELU(),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.GELU(),
        )
        self.out = nn.Linear(cfg.hidden, 1)
        nn.init.zeros_(self.out.weight)  # starts as the skip alone: the fine-tuned order
        nn.init.zeros_(self.out.bias)
        self.skip = nn.Parameter(torch.ones(()))
        self.score_hidden = nn.Sequential(nn.Linear(cfg.n_score_features, cfg.hidden), nn.GELU())
        self.score_out = nn.Linear(cfg.hidden, 1)
        nn.init.zeros_(self.score_out.weight)  # starts as the encoder's prediction
        nn.init.zeros_(self.score_out.bias)

    def forward(
        self, features: torch.Tensor, score_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(utilities [..., candidates], scores [..., asked]): scores on the 1-10 scale, unclipped
        (training regresses on them). `features` may be wider than the net reads: a ranker of the
        absolute features alone reads the first `N_ABSOLUTE_FEATURES` columns of a full table."""
        features = features[..., : self.cfg.n_features]
        utilities = self.out(self.mlp(features)).squeeze(-1) + self.skip * features[..., 0]
        centred = score_features[..., 0] + self.score_out(self.score_hidden(score_features))[..., 0]
        return utilities, SCORE_CENTRE + SCORE_SCALE * centred


def position_weights(n: int, kind: str, top_k: int) -> np.ndarray:
    i = np.arange(1, n + 1, dtype=np.float64)
    if kind == "log":
        w = 1.0 / np.log2(1.0 + i)
    elif kind == "exp":
        w = np.exp2(np.minimum(n, top_k) - i) - 1.0
        w = w / max(w.max(), 1.0) + 1e-3  # rescaled; the last graded position keeps a little weight
    else:
        raise ConfigError(f"ranker.alpha must be 'log' or 'exp', not {kind!r}")
    w[top_k:] = 0.0
    return w


def listmle_loss(
    scores: torch.Tensor, valid: torch.Tensor, n_graded: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Position-aware ListMLE summed over lists, and its number of weighted terms.

    scores [B, L] are in list order: graded items first (best first), then sampled negatives; term
    i = weights[i] * (log sum_{k>=i} exp s_k - s_i) for i < n_graded (reversed log-cumsum-exp).
    """
    masked = scores.float().masked_fill(~valid, float("-inf"))
    tail_lse = torch.logcumsumexp(masked.flip(1), dim=1).flip(1)
    position = torch.arange(scores.shape[1], device=scores.device)
    graded = position[None, :] < n_graded[:, None]
    terms = torch.where(graded, tail_lse - masked, torch.zeros_like(masked))
    return (terms * weights[None, : scores.shape[1]]).sum(), graded.sum()


def grades(history: EntryArrays) -> np.ndarray:
    status_rank = np.array([STATUS_RANK.get(int(s), 0) for s in history.statuses])
    return np.asarray(history.scores, dtype=np.float64) * 10.0 + status_rank


# -------------------------------------------------------------------------------- candidate table


@dataclass
class UserCandidates:
    items: np.ndarray  # the candidates of `select_candidates`
    features: np.ndarray  # float32 [len(items), N_RANKER_FEATURES]
    score_items: np.ndarray  # items asked about for the score head
    score_features: np.ndarray  # float32 [len(score_items), N_SCORE_FEATURES]


def load_finetuned(path: str, device: torch.device) -> tuple[ListTransformer, dict[str, Any]]:
    payload = load_checkpoint(path)
    if payload.get("kind") not in ("pretrain", "finetune"):
        raise ConfigError(f"{path} is not a pretrain/finetune checkpoint")
    model = ListTransformer(ModelConfig(**payload["model_config"]))
    model.load_state_dict(payload["model"])
    return model.to(device).eval(), payload


def candidate_tables(
    model: ListTransformer,
    histories: Sequence[EntryArrays],
    *,
    has_times: bool,
    episodes: np.ndarray | None,
    facts: ItemFacts,
    n_candidates: int,
    score_items: Sequence[np.ndarray] | None = None,
    device: torch.device | None = None,
) -> tuple[list[UserCandidates], np.ndarray]:
    """Per user: the candidates of `select_candidates` with their features, and the score head's
    features for `score_items[row]` (none by default); also the raw logits."""
    states = user_states(model, histories, has_times=has_times, episodes=episodes, device=device)
    logits = watch_logits(model, states)
    tables = []
    for row, history in enumerate(histories):
        candidates = select_candidates(history, logits[row], facts, n_candidates)
        items = candidates.items
        asked = (
            np.zeros(0, dtype=np.int64)
            if score_items is None
            else np.asarray(score_items[row], dtype=np.int64)
        )
        both = np.concatenate([items, asked])
        scores, drops = entry_predictions(model, states, np.full(len(both), row), both)
        n = len(items)
        features = ranker_features(history, candidates, scores[:n], drops[:n], facts)
        tables.append(
            UserCandidates(
                items, features, asked, score_features(history, asked, scores[n:], facts)
            )
        )
    return tables, logits


def item_statistics(
    items: np.ndarray, scores: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log popularity 0..1, mean score (0 = never scored), times scored) from interactions."""
    items = np.asarray(items, dtype=np.int64)
    counts = np.bincount(items, minlength=n_items).astype(np.float64)
    log_pop = np.log1p(counts) / max(np.log1p(counts.max()) if len(counts) else 0.0, 1e-9)
    is_scored = np.asarray(scores) > 0
    score_count = np.bincount(items[is_scored], minlength=n_items).astype(np.float64)
    score_sum = np.bincount(
        items[is_scored], np.asarray(scores)[is_scored].astype(np.float64), minlength=n_items
    )
    mean_score = np.where(score_count > 0, score_sum / np.maximum(score_count, 1), 0.0)
    return log_pop.astype(np.float32), mean_score.astype(np.float32), score_count.astype(np.float32)


def item_facts(parts: UserParts, catalog_path: str) -> ItemFacts:
    """Popularity and mean scores from the training part; franchises and genres from the
    catalogue, if any."""
    n_items = parts.n_items
    train = np.asarray(parts.labels) == TRAIN
    log_pop, mean_score, score_count = item_statistics(
        np.asarray(parts.dataset.items)[train], np.asarray(parts.dataset.scores)[train], n_items
    )
    franchise = np.full(n_items, -1, dtype=np.int64)
    genres = np.zeros((n_items, 0), dtype=np.float32)
    if catalog_path:
        from inference.catalog import load_catalog

        catalog = load_catalog(catalog_path)
        if len(catalog) != n_items:
            raise ConfigError(f"catalogue {catalog_path} has {len(catalog)} items, not {n_items}")
        names = sorted({g for item in catalog for g in item.genres})
        column = {g: i for i, g in enumerate(names)}
        genres = np.zeros((n_items, len(names)), dtype=np.float32)
        for i, item in enumerate(catalog):
            franchise[i] = -1 if item.franchise_id is None else item.franchise_id
            for g in item.genres:
                genres[i, column[g]] = 1.0
    return ItemFacts(log_pop, franchise, genres, mean_score=mean_score, score_count=score_count)


def refit_facts(
    payload: dict[str, Any],
    users: np.ndarray,
    items: np.ndarray,
    scores: np.ndarray,
    *,
    n_items: int,
    has_times: bool,
) -> ItemFacts:
    """A ranker checkpoint's facts with the data-derived ones (popularity, mean scores, item-item
    neighbours and transitions, fitted as the checkpoint says) refitted on other interactions:
    `users`, `items`, `scores` per interaction, grouped by user in time order. `evaluate` refits
    on train + validation for the test run, as it does every baseline; `export` on everything.
    The catalogue facts (franchise, genres) and the ranker's weights stay as they are."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    matrix = binary_matrix(users, items, int(users.max()) + 1 if len(users) else 0, n_items)
    log_pop, _, _ = item_statistics(matrix.indices, np.zeros(matrix.nnz), n_items)
    _, mean_score, score_count = item_statistics(items, scores, n_items)
    facts = replace(
        ItemFacts.from_arrays(payload["facts"]),
        log_popularity=log_pop,
        mean_score=mean_score,
        score_count=score_count,
    )
    fitted = payload.get("neighbours") or {}
    if int(fitted.get("k", 0)) > 0:
        near, weights = fit_neighbours(matrix, float(fitted["lambda"]), int(fitted["k"]))
        facts = replace(facts, neighbour_items=near, neighbour_weights=weights)
    k = int((payload.get("transitions") or {}).get("k", 0))
    if k > 0 and has_times:
        after, counts = top_transitions(users, items, n_items, k)
        facts = replace(facts, transition_items=after, transition_counts=counts)
    return facts


# ------------------------------------------------------------------------------------------- job


@dataclass
class RankerList:
    features: np.ndarray  # [m, F]: candidates and held-out items
    graded_rows: np.ndarray  # rows of the held-out items
    graded: np.ndarray  # their grades
    negative_rows: np.ndarray  # rows of candidates that are not held out
    targets: np.ndarray  # held-out item ids (for the check)
    items: np.ndarray
    score_features: np.ndarray  # [s, N_SCORE_FEATURES]: the scored held-out items (any rank)
    score_targets: np.ndarray  # [s]: their scores


class RankerJob:
    kind = "ranker"
    loss_weights = {"listmle": 1.0, "score": 1.0}  # noqa: RUF012 (read-only class constant)

    def __init__(self, cfg: RankerConfig, lists: list[RankerList], check: list[RankerList]) -> None:
        self.cfg = cfg
        self.lists = lists
        self.check = check
        s = cfg.ranker
        self.width = MAX_GRADED + s.negatives
        self.weights = position_weights(self.width, s.alpha, s.top_k).astype(np.float32)
        if s.grading not in ("score", "binary"):
            raise ConfigError(f"ranker.grading must be 'score' or 'binary', not {s.grading!r}")
        self.extra: dict[str, Any] = {}

    def steps_per_epoch(self) -> int:
        return n_steps(len(self.lists), self.cfg.train.batch_size, self.cfg.train.steps_per_epoch)

    def batches(
        self, epoch: int, rank: int, world: int, shard: tuple[int, int] = (0, 1)
    ) -> Iterator[Batch]:
        tc = self.cfg.train
        if tc.batch_size % world:
            raise ConfigError(f"batch_size {tc.batch_size} is not divisible by {world} ranks")
        part = rank_slice(tc.batch_size, rank, world)
        for step, gb in enumerate(
            global_batches(len(self.lists), tc.batch_size, tc.seed, epoch, tc.steps_per_epoch)
        ):
            if step % shard[1] == shard[0]:
                yield self._batch(gb.samples[part], gb.seeds[part])

    def _batch(self, samples: np.ndarray, seeds: np.ndarray) -> Batch:
        features = np.zeros((len(samples), self.width, N_RANKER_FEATURES), dtype=np.float32)
        valid = np.zeros((len(samples), self.width), dtype=bool)
        n_graded = np.zeros(len(samples), dtype=np.int64)
        score_features = np.zeros((len(samples), MAX_GRADED, N_SCORE_FEATURES), dtype=np.float32)
        score_targets = np.zeros((len(samples), MAX_GRADED), dtype=np.float32)
        score_valid = np.zeros((len(samples), MAX_GRADED), dtype=bool)
        for row, (index, seed) in enumerate(zip(samples, seeds, strict=True)):
            rng = np.random.default_rng(int(seed))
            lst = self.lists[int(index)]
            # Best grade first; equal grades in a fresh random order each epoch.
            grade = lst.graded if self.cfg.ranker.grading == "score" else np.zeros(len(lst.graded))
            order = np.lexsort((rng.random(len(lst.graded)), -grade))[:MAX_GRADED]
            negatives = rng.permutation(lst.negative_rows)[: self.cfg.ranker.negatives]
            rows = np.concatenate([lst.graded_rows[order], negatives])
            features[row, : len(rows)] = lst.features[rows]
            valid[row, : len(rows)] = True
            n_graded[row] = len(order)
            m = len(lst.score_targets)
            score_features[row, :m] = lst.score_features
            score_targets[row, :m] = lst.score_targets
            score_valid[row, :m] = True
        # "items" is what the loop counts as tokens: here, list entries scored.
        return {
            "features": features,
            "valid": valid,
            "n_graded": n_graded,
            "score_features": score_features,
            "score_targets": score_targets,
            "score_valid": score_valid,
            "items": valid,
        }

    def losses(self, model: nn.Module, batch: Batch, device: torch.device) -> Losses:
        scores, predicted = model(
            torch.from_numpy(batch["features"]).to(device),
            torch.from_numpy(batch["score_features"]).to(device),
        )
        loss, count = listmle_loss(
            scores,
            torch.from_numpy(batch["valid"]).to(device),
            torch.from_numpy(batch["n_graded"]).to(device),
            torch.from_numpy(self.weights).to(device),
        )
        error = predicted.float() - torch.from_numpy(batch["score_targets"]).to(device)
        scored = torch.from_numpy(batch["score_valid"]).to(device)
        return {
            "listmle": (loss, count),
            "score": ((error.square() * scored).sum(), scored.sum()),
        }

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        if not self.check:
            return {}
        k = self.cfg.train.val_k
        ours, hr, base, near = [], [], [], []
        squared, base_squared = [], []
        for lst in self.check:
            with torch.no_grad():
                utilities, predicted = model(
                    torch.from_numpy(lst.features).to(device),
                    torch.from_numpy(lst.score_features).to(device),
                )
            scores = utilities.float().cpu().numpy()
            predicted = predicted.float().clamp(1.0, 10.0).cpu().numpy()
            squared.append((predicted - lst.score_targets) ** 2)
            encoder = lst.score_features[:, 0] * SCORE_SCALE + SCORE_CENTRE
            base_squared.append((encoder - lst.score_targets) ** 2)
            ours.append(ndcg_at_k(_by(lst.items, scores), lst.targets, k))
            hr.append(recall_at_k(_by(lst.items, scores), lst.targets, k))
            # The two first stages alone, over the same candidates, for reference.
            base.append(ndcg_at_k(_by(lst.items, lst.features[:, 0]), lst.targets, k))
            near.append(ndcg_at_k(_by(lst.items, lst.features[:, NEIGHBOUR_SCORE]), lst.targets, k))
        return {
            f"val_NDCG@{k}": float(np.mean(ours)),
            f"val_HR@{k}": float(np.mean(hr)),
            f"val_base_NDCG@{k}": float(np.mean(base)),
            f"val_neighbour_NDCG@{k}": float(np.mean(near)),
            "val_RMSE": float(np.sqrt(np.concatenate(squared).mean())),
            "val_base_RMSE": float(np.sqrt(np.concatenate(base_squared).mean())),
        }

    def checkpoint_extra(self) -> dict[str, Any]:
        return self.extra


def _by(items: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return items[np.argsort(-scores, kind="stable")]


def build_lists(
    tables: list[UserCandidates], held: Sequence[EntryArrays], grade_of: list[np.ndarray]
) -> list[RankerList]:
    lists = []
    for table, part, grade in zip(tables, held, grade_of, strict=True):
        target = np.asarray(part.items, dtype=np.int64)
        is_target = np.isin(table.items, target)
        graded_rows = np.flatnonzero(is_target)
        if len(graded_rows) == 0 and len(table.score_items) == 0:
            continue  # nothing to learn from: no held-out item is a candidate, none is scored
        grade_by_item = dict(zip(target.tolist(), grade.tolist(), strict=True))
        graded = np.array([grade_by_item[int(i)] for i in table.items[graded_rows]])
        score_by_item = dict(zip(target.tolist(), np.asarray(part.scores).tolist(), strict=True))
        lists.append(
            RankerList(
                table.features,
                graded_rows,
                graded,
                np.flatnonzero(~is_target),
                target,
                table.items,
                table.score_features,
                np.array([score_by_item[int(i)] for i in table.score_items], dtype=np.float32),
            )
        )
    return lists


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_common_args(parser)


def ranker_lists(
    cfg: RankerConfig, model: ListTransformer, payload: dict[str, Any], dist: Dist
) -> tuple[list[RankerList], ItemFacts]:
    """The ranker's training lists (one per user with validation items: features of the fine-tuned
    model's candidates, fed the training part) and the item facts behind them."""
    s = cfg.ranker
    parts = UserParts(Dataset(cfg.data.path), cfg.data.split)
    if payload["n_items"] != parts.n_items:
        raise ConfigError(
            f"{s.finetuned} was trained on {payload['n_items']} items, not {parts.n_items}"
        )
    # Encode as the fine-tuned model was trained (progress from its catalogue, or none); the
    # ranker's own catalogue only feeds the franchise and genre features.
    episodes = load_episodes(payload.get("catalog") or "", parts.n_items)
    facts = item_facts(parts, cfg.data.catalog)
    if s.neighbours > 0:
        if dist.is_main:
            print(f"ranker: item-item neighbours (EASE λ={s.neighbour_lambda:g})", flush=True)
        facts = with_neighbours(facts, parts, s.neighbour_lambda, s.neighbours)
    if s.transitions > 0 and parts.has_times:
        items, counts = fit_transitions(parts, s.transitions)
        facts = replace(facts, transition_items=items, transition_counts=counts)
    users = parts.users_with(min_train=1, label=VALIDATION)
    histories = [parts.part(int(u)) for u in users]
    held = [parts.part(int(u), (VALIDATION,)) for u in users]
    if dist.is_main:
        print(f"ranker: features for {len(users)} users", flush=True)
    tables, _ = candidate_tables(
        model,
        histories,
        has_times=parts.has_times,
        episodes=episodes,
        facts=facts,
        n_candidates=s.candidates,
        # No held-out items from outside the candidates: they would be the only items ranked
        # below `candidates` by the fine-tuned model, and the ranker learns that "a low rank means
        # held out" (at serving nothing outside the candidates is ever scored).
        # The score head learns from every scored held-out item, candidate or not.
        score_items=[h.items[h.scores > 0][:MAX_GRADED].astype(np.int64) for h in held],
        device=dist.device,
    )
    return build_lists(tables, held, [grades(h) for h in held]), facts


def _main(args: argparse.Namespace, dist: Dist) -> None:
    cfg = load_config(RankerConfig, args.config, args.overrides)
    s = cfg.ranker
    if not cfg.data.path or not s.finetuned:
        raise ConfigError("data.path and ranker.finetuned must be set")
    model, payload = load_finetuned(s.finetuned, dist.device)
    # The ranker learns from the validation part: neither it nor the model it reads may have.
    if cfg.data.fit_validation or payload.get("config", {}).get("data", {}).get("fit_validation"):
        raise ConfigError(
            "the ranker learns from the validation part, so neither it nor ranker.finetuned "
            "may be trained with data.fit_validation"
        )
    lists, facts = ranker_lists(cfg, model, payload, dist)
    rng = np.random.default_rng([cfg.train.seed, 11])
    is_check = rng.random(len(lists)) < s.holdout_users
    job = RankerJob(
        cfg,
        [lst for lst, c in zip(lists, is_check, strict=True) if not c],
        [lst for lst, c in zip(lists, is_check, strict=True) if c],
    )
    job.extra = {
        "finetuned": s.finetuned,
        "candidates": s.candidates,
        "facts": facts.as_arrays(),
        # How the neighbours were fitted, so that `evaluate` can refit them on train + validation
        # for the test run as it does the baselines (the ranker's weights stay as trained).
        "neighbours": {"k": s.neighbours, "lambda": s.neighbour_lambda},
        "transitions": {"k": s.transitions if facts.transition_items.shape[1] else 0},
    }
    torch.manual_seed(cfg.train.seed)
    width = N_RANKER_FEATURES if s.list_relative else N_ABSOLUTE_FEATURES
    net = RankerNet(RankerNetConfig(n_features=width, hidden=s.hidden))
    fit(cfg, net, job, dist, resume=args.resume)  # type: ignore[arg-type]


def main(args: argparse.Namespace) -> int:
    return run_command(_main, args)
