"""`python -m training finetune --config X.toml`: fine-tune on "what does the user add next?".

A MASK query stamped "now" follows the history; from its state the model predicts the held-out
recent items (multi-label softmax over the vocabulary, the history's own items excluded since they
are never recommended), their scores and whether they get dropped. Timed data: many random cut
points per user per epoch (history before the cut, the next entries as targets); untimed data: a
fresh random 10% of the user's training entries each time (see `batches.finetune_batch`).

`next_entries = true` (timed data) asks the same question after every prefix of a window in one
pass (`batches.next_entries_batch`, causal entry tokens): one target per entry instead of one per
sequence, the supervision density of SASRec, with the serving-form query and all entry fields.
With `model.readout = "entry"` each entry's own state predicts the next entry, SASRec's readout,
and the query tokens (half the columns of such a batch) go.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.batches import UserParts, finetune_batch, next_entries_batch
from training.model import ListTransformer, ModelConfig
from training.pretrain import (
    ListJob,
    attach_content,
    entry_losses,
    init_items,
    prepare,
    run_command,
)
from training.teacher import EaseTeacher, distillation_loss
from training.train import (
    FIELDS_IN,
    Batch,
    ConfigError,
    Dist,
    Losses,
    RunConfig,
    add_common_args,
    fit,
    load_checkpoint,
    load_config,
    to_device,
)


@dataclass
class FinetuneSettings:
    init_from: str = ""  # a pretrain checkpoint; its architecture wins over [model]
    cuts_per_user: int = 8  # samples per user per epoch
    holdout_share: float = 0.1  # untimed data: share of entries held out as targets
    n_next: int = 1  # timed data: entries after the cut that are targets
    score_weight: float = 0.5
    status_weight: float = 0.2
    next_entries: bool = False  # timed data: a query after every prefix (causal entry tokens)
    # Distillation from EASE fitted on the training part (training.teacher; one-cut fine-tune only):
    # the watch head also learns EASE's softmax over the titles each sample has not listed.
    teacher_weight: float = 0.0  # 0: no teacher
    teacher_lambda: float = 100.0  # EASE's λ
    teacher_neighbours: int = 256  # EASE weights kept per item
    teacher_temperature: float = 0.05  # EASE scores are a fraction of a unit apart
    teacher_folds: int = 2  # cross-fitted: a user's samples are scored by an EASE fitted on others


@dataclass
class FinetuneConfig(RunConfig):
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)


class FinetuneJob(ListJob):
    kind = "finetune"

    def __init__(self, cfg: FinetuneConfig, parts: UserParts, episodes: np.ndarray | None) -> None:
        users = parts.users_with(min_train=2)
        super().__init__(cfg, parts, np.repeat(users, cfg.finetune.cuts_per_user), episodes)
        self.settings = cfg.finetune
        if self.settings.teacher_weight > 0 and self.settings.next_entries:
            raise ConfigError("finetune.teacher_weight works with one-cut fine-tuning only")
        if cfg.model.readout == "entry" and not self.settings.next_entries:
            raise ConfigError('model.readout = "entry" is trained by finetune.next_entries')
        if self.settings.next_entries and not parts.has_times:
            raise ConfigError(
                "finetune.next_entries needs time-ordered data; this dataset has none"
            )
        self.loss_weights = {
            "item": 1.0,
            "score": cfg.finetune.score_weight,
            "status": cfg.finetune.status_weight,
        }
        self.teacher: EaseTeacher | None = None
        if self.settings.teacher_weight > 0:
            if self.settings.teacher_temperature <= 0:
                raise ConfigError("finetune.teacher_temperature must be positive")
            self.teacher = EaseTeacher(
                parts,
                self.settings.teacher_lambda,
                self.settings.teacher_neighbours,
                self.settings.teacher_folds,
            )
            self.loss_weights["teacher"] = self.settings.teacher_weight

    def batches(
        self, epoch: int, rank: int, world: int, shard: tuple[int, int] = (0, 1)
    ) -> Iterator[Batch]:
        def build(users: np.ndarray, seeds: np.ndarray) -> Batch:
            if self.settings.next_entries:
                return next_entries_batch(
                    self.parts,
                    users,
                    seeds,
                    max_len=self.cfg.model.max_len,
                    use_times=self.cfg.model.use_times,
                    episodes=self.episodes,
                    queries=self.cfg.model.readout == "query",
                )
            batch = finetune_batch(
                self.parts,
                users,
                seeds,
                max_len=self.cfg.model.max_len,
                holdout_share=self.settings.holdout_share,
                n_next=self.settings.n_next,
                episodes=self.episodes,
            )
            if self.teacher is not None:
                batch["users"] = users  # which teacher fold scores each sample
            return batch

        return self._batches(epoch, rank, world, build, shard)

    def losses(self, model: nn.Module, batch: Batch, device: torch.device) -> Losses:
        assert isinstance(model, ListTransformer)
        if self.settings.next_entries:
            return self._next_entries_losses(model, batch, device)
        states = model(to_device(batch, device, FIELDS_IN))[:, -1]
        t = to_device(
            batch,
            device,
            ("target_items", "target_scores", "target_statuses", "seen_rows", "seen_items"),
        )
        targets = t["target_items"]
        valid = targets >= 0
        logits = model.item_logits(states).float()
        # History items are never recommended: keep them out of the softmax's denominator.
        seen = torch.zeros(logits.shape, dtype=torch.bool, device=device)
        seen[t["seen_rows"], t["seen_items"]] = True
        seen.scatter_(1, targets.clamp(min=0), False)
        log_probs = torch.log_softmax(logits.masked_fill(seen, float("-inf")), dim=-1)
        picked = log_probs.gather(1, targets.clamp(min=0))
        item_loss = -(picked * valid).sum()
        rows = valid.nonzero()[:, 0]
        teacher: Losses = {}
        if self.teacher is not None:
            ease = self.teacher.scores(batch["users"], batch["seen_rows"], batch["seen_items"])
            scores = torch.from_numpy(ease).to(device)
            # The student's own denominator without the history, targets included.
            loss = distillation_loss(log_probs, scores, self.settings.teacher_temperature)
            teacher["teacher"] = (loss, torch.tensor(len(logits), device=device))
        return {
            "item": (item_loss, valid.sum()),
            **teacher,
            **entry_losses(
                model,
                states[rows],
                targets[valid],
                t["target_scores"][valid],
                t["target_statuses"][valid],
            ),
        }

    def _next_entries_losses(
        self, model: ListTransformer, batch: Batch, device: torch.device
    ) -> Losses:
        queries = "query_sees" in batch  # none with the "entry" readout: entries answer
        inputs = to_device(batch, device, (*FIELDS_IN, "query_sees") if queries else FIELDS_IN)
        hidden = model(inputs)
        t = to_device(batch, device, ("target_items", "target_scores", "target_statuses"))
        valid = t["target_items"] >= 0
        rows, cols = valid.nonzero(as_tuple=True)
        newest = inputs["query_sees"][rows, cols] if queries else cols
        states = model.query_states(hidden, rows, cols, newest)
        targets = t["target_items"][valid]
        # Logits only at the queries: padding would waste B x L x n_items memory.
        item_loss = F.cross_entropy(model.item_logits(states).float(), targets, reduction="sum")
        return {
            "item": (item_loss, valid.sum()),
            **entry_losses(
                model, states, targets, t["target_scores"][valid], t["target_statuses"][valid]
            ),
        }


def build_model(cfg: FinetuneConfig, parts: UserParts) -> ListTransformer:
    """The pretrained model (architecture from its checkpoint), or a fresh one from [model]."""
    if not cfg.finetune.init_from:
        if cfg.finetune.next_entries:
            cfg.model.causal, cfg.model.use_times = True, False
        torch.manual_seed(cfg.train.seed)
        fresh = ListTransformer(cfg.model)
        init_items(fresh, parts, cfg.train.seed)
        return fresh
    payload = load_checkpoint(cfg.finetune.init_from)
    if payload.get("kind") not in ("pretrain", "finetune"):
        raise ConfigError(f"{cfg.finetune.init_from} is not a pretrain/finetune checkpoint")
    model_cfg = ModelConfig(**payload["model_config"])
    if model_cfg.n_items != cfg.model.n_items:
        raise ConfigError(
            f"{cfg.finetune.init_from} has {model_cfg.n_items} items, the dataset {cfg.model.n_items}"
        )
    model_cfg.dropout = cfg.model.dropout
    model_cfg.id_dropout = cfg.model.id_dropout
    if model_cfg.content_dim != cfg.model.content_dim:
        raise ConfigError(
            f"{cfg.finetune.init_from} reads {model_cfg.content_dim} content columns, "
            f"data.content_catalog gives {cfg.model.content_dim}"
        )
    # The next-entries objective needs causal entry tokens and no entry times (see batches);
    # the weights carry over, attention just stops looking ahead.
    model_cfg.causal = cfg.finetune.next_entries or model_cfg.causal
    model_cfg.use_times = cfg.model.use_times and not cfg.finetune.next_entries
    model_cfg.read_last_entry = cfg.model.read_last_entry
    model_cfg.readout = cfg.model.readout
    model = ListTransformer(model_cfg)
    model.load_state_dict(payload["model"])
    cfg.model = model_cfg
    return model


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_common_args(parser)


def _main(args: argparse.Namespace, dist: Dist) -> None:
    cfg = load_config(FinetuneConfig, args.config, args.overrides)
    parts, episodes = prepare(cfg)
    model = build_model(cfg, parts)
    # Also over a pretrained model's own vectors: which items have an ID part follows this split.
    attach_content(model, cfg, parts)
    fit(cfg, model, FinetuneJob(cfg, parts, episodes), dist, resume=args.resume)


def main(args: argparse.Namespace) -> int:
    return run_command(_main, args)
