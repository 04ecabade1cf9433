"""`python -m training pretrain --config X.toml`: masked pretraining of the list transformer.

15% of each history's entries are hidden (item, score, status, progress); the model predicts the
item (full softmax, tied output, only at hidden positions) and, where known, its score and status.
Some rows also hide their last entry stamped "now", the fine-tuning query (see `batches`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.catalog import load_catalog
from inference.content import ContentLayout, content_vectors, genre_vocabulary
from training.batches import (
    UserParts,
    global_batches,
    keep_freed_memory,
    load_episodes,
    n_steps,
    pretrain_batch,
    validation_set,
)
from training.dataset import TRAIN, Dataset
from training.item_init import init_item_embeddings
from training.model import ListTransformer
from training.scoring import user_states, watch_logits
from training.train import (
    FIELDS_IN,
    Batch,
    ConfigError,
    Dist,
    Losses,
    RunConfig,
    add_common_args,
    fit,
    load_config,
    rank_slice,
    ranking_metrics,
    setup_distributed,
    teardown_distributed,
    to_device,
)


@dataclass
class PretrainSettings:
    mask_prob: float = 0.15
    query_prob: float = 0.2
    score_weight: float = 0.5
    status_weight: float = 0.2


@dataclass
class PretrainConfig(RunConfig):
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)


class ListJob:
    """What pretraining and fine-tuning share: samples of users, validation, checkpoint facts."""

    kind = "list"

    def __init__(
        self, cfg: RunConfig, parts: UserParts, samples: np.ndarray, episodes: np.ndarray | None
    ) -> None:
        self.cfg = cfg
        self.parts = parts
        self.samples = samples  # a user index per sample (a user may appear several times)
        self.episodes = episodes
        self.validation = validation_set(parts, cfg.train.val_users, cfg.train.seed)
        self.unlisted = parts.dataset.unlisted_items()  # never ranked, as in `evaluate`

    def steps_per_epoch(self) -> int:
        tc = self.cfg.train
        return n_steps(len(self.samples), tc.batch_size, tc.steps_per_epoch)

    def _batches(
        self,
        epoch: int,
        rank: int,
        world: int,
        build: Callable[..., Batch],
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[Batch]:
        tc = self.cfg.train
        if tc.batch_size % world:
            raise ConfigError(f"batch_size {tc.batch_size} is not divisible by {world} ranks")
        part = rank_slice(tc.batch_size, rank, world)
        keep_freed_memory()
        for step, gb in enumerate(
            global_batches(
                len(self.samples),
                tc.batch_size,
                tc.seed,
                epoch,
                tc.steps_per_epoch,
                lengths=self.parts.counts[TRAIN][self.samples],
                bucket_batches=tc.bucket_batches,
            )
        ):
            if step % shard[1] == shard[0]:
                yield build(self.samples[gb.samples[part]], gb.seeds[part])

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        if not self.validation.histories:
            return {}
        assert isinstance(model, ListTransformer)
        states = user_states(
            model,
            self.validation.histories,
            has_times=self.parts.has_times,
            episodes=self.episodes,
            device=device,
        )
        seen = [h.items for h in self.validation.histories]
        return ranking_metrics(
            watch_logits(model, states),
            seen,
            self.validation.targets,
            self.cfg.train.val_k,
            unlisted=self.unlisted,
        )

    def checkpoint_extra(self) -> dict[str, Any]:
        extra = {
            "has_times": self.parts.has_times,
            "n_items": self.parts.n_items,
            "dataset": str(self.parts.dataset.path),
            "catalog": self.cfg.data.catalog,
        }
        if self.cfg.data.content_catalog:
            extra["content_catalog"] = self.cfg.data.content_catalog
            extra["content_layout"] = content_layout(self.cfg.data.content_catalog).to_json()
        return extra


class PretrainJob(ListJob):
    kind = "pretrain"

    def __init__(self, cfg: PretrainConfig, parts: UserParts, episodes: np.ndarray | None) -> None:
        super().__init__(cfg, parts, parts.users_with(min_train=2), episodes)
        self.settings = cfg.pretrain
        self.loss_weights = {
            "item": 1.0,
            "score": cfg.pretrain.score_weight,
            "status": cfg.pretrain.status_weight,
        }

    def batches(
        self, epoch: int, rank: int, world: int, shard: tuple[int, int] = (0, 1)
    ) -> Iterator[Batch]:
        def build(users: np.ndarray, seeds: np.ndarray) -> Batch:
            return pretrain_batch(
                self.parts,
                users,
                seeds,
                max_len=self.cfg.model.max_len,
                mask_prob=self.settings.mask_prob,
                query_prob=self.settings.query_prob,
                episodes=self.episodes,
            )

        return self._batches(epoch, rank, world, build, shard)

    def losses(self, model: nn.Module, batch: Batch, device: torch.device) -> Losses:
        assert isinstance(model, ListTransformer)
        hidden = model(to_device(batch, device, FIELDS_IN))
        t = to_device(
            batch,
            device,
            ("target_rows", "target_cols", "target_items", "target_scores", "target_statuses"),
        )
        states = hidden[t["target_rows"], t["target_cols"]]
        logits = model.item_logits(states).float()
        item_loss = F.cross_entropy(logits, t["target_items"], reduction="sum")
        return {
            "item": (item_loss, torch.tensor(len(logits), device=device)),
            **entry_losses(
                model, states, t["target_items"], t["target_scores"], t["target_statuses"]
            ),
        }


def entry_losses(
    model: ListTransformer,
    states: torch.Tensor,
    items: torch.Tensor,
    scores: torch.Tensor,
    statuses: torch.Tensor,
) -> Losses:
    """Squared error of the score where one is known, and status cross-entropy, of given items."""
    predicted, status_logits = model.entry_outputs(states, items)
    known = (scores > 0).float()
    score_loss = (((predicted.float() - scores.float()) ** 2) * known).sum()
    status_loss = F.cross_entropy(status_logits.float(), statuses, reduction="sum")
    return {
        "score": (score_loss, known.sum()),
        "status": (status_loss, torch.tensor(len(items), device=states.device)),
    }


def prepare(cfg: RunConfig) -> tuple[UserParts, np.ndarray | None]:
    if not cfg.data.path:
        raise ConfigError("data.path is not set")
    if cfg.data.fit_validation and cfg.train.val_users > 0:
        raise ConfigError(
            "data.fit_validation trains on the validation part too, so nothing is left to "
            "validate on: set train.val_users = 0"
        )
    dataset = Dataset(cfg.data.path)
    parts = UserParts(dataset, cfg.data.split, with_validation=cfg.data.fit_validation)
    episodes = load_episodes(cfg.data.catalog, dataset.n_items)
    cfg.model.n_items = dataset.n_items
    cfg.model.content_dim = (
        content_layout(cfg.data.content_catalog).dim if cfg.data.content_catalog else 0
    )
    return parts, episodes


def content_layout(catalog_path: str) -> ContentLayout:
    """The content layout a catalogue gives (its genre list)."""
    return ContentLayout(genre_vocabulary(load_catalog(Path(catalog_path)).items))


def attach_content(model: ListTransformer, cfg: RunConfig, parts: UserParts) -> None:
    """Give a content model its item content vectors, and an ID embedding only to the items the
    training part has interactions with (a held-out title must be read from its content alone)."""
    if not cfg.data.content_catalog:
        return
    catalog = load_catalog(Path(cfg.data.content_catalog))
    if len(catalog) != parts.n_items:
        raise ConfigError(
            f"content catalogue {cfg.data.content_catalog} has {len(catalog)} items, the dataset "
            f"{parts.n_items}: build it with `python -m training vocab-catalog`"
        )
    vectors = content_vectors(catalog.items, ContentLayout(genre_vocabulary(catalog.items)))
    items = np.asarray(parts.dataset.items)
    trained = np.bincount(items[np.asarray(parts.labels) == TRAIN], minlength=parts.n_items) > 0
    model.set_content(torch.from_numpy(vectors), torch.from_numpy(trained))


def init_items(model: ListTransformer, parts: UserParts, seed: int) -> None:
    """A fresh model's item embeddings as `model.item_init` says (a resumed run loads its own)."""
    init_item_embeddings(
        model,
        model.cfg.item_init,
        np.asarray(parts.dataset.items),
        np.asarray(parts.labels),
        np.asarray(parts.dataset.offsets),
        seed,
    )


def run_command(main: Callable[[argparse.Namespace, Dist], None], args: argparse.Namespace) -> int:
    """Set up (and always tear down) the process group around `main`; its errors propagate to
    `python -m training`, which reports them."""
    dist = setup_distributed(args.device)
    try:
        main(args, dist)
    finally:
        teardown_distributed()
    return 0


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_common_args(parser)


def _main(args: argparse.Namespace, dist: Dist) -> None:
    cfg = load_config(PretrainConfig, args.config, args.overrides)
    parts, episodes = prepare(cfg)
    torch.manual_seed(cfg.train.seed)
    model = ListTransformer(cfg.model)
    init_items(model, parts, cfg.train.seed)
    attach_content(model, cfg, parts)
    fit(cfg, model, PretrainJob(cfg, parts, episodes), dist, resume=args.resume)


def main(args: argparse.Namespace) -> int:
    return run_command(_main, args)
