"""`python -m training sasrec --config X.toml`: the SASRec reference baseline (Kang & McAuley 2018).

The same `ListTransformer` with causal attention, item + learned position inputs only, trained to
predict the next item at every position with a full-softmax cross-entropy (the strong variant of
Klenitskiy & Vasilev 2023), by the same loop and optimizer as our model.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.batches import UserParts, sasrec_batch
from training.model import ListTransformer
from training.pretrain import ListJob, prepare, run_command
from training.train import (
    FIELDS_IN,
    Batch,
    Dist,
    Losses,
    RunConfig,
    add_common_args,
    fit,
    load_config,
    to_device,
)


class SasrecJob(ListJob):
    kind = "sasrec"
    loss_weights = {"item": 1.0}  # noqa: RUF012 (read-only class constant)

    def __init__(self, cfg: RunConfig, parts: UserParts) -> None:
        super().__init__(cfg, parts, parts.users_with(min_train=2), None)

    def batches(
        self, epoch: int, rank: int, world: int, shard: tuple[int, int] = (0, 1)
    ) -> Iterator[Batch]:
        def build(users: np.ndarray, seeds: np.ndarray) -> Batch:
            return sasrec_batch(self.parts, users, seeds, max_len=self.cfg.model.max_len)

        return self._batches(epoch, rank, world, build, shard)

    def losses(self, model: nn.Module, batch: Batch, device: torch.device) -> Losses:
        assert isinstance(model, ListTransformer)
        hidden = model(to_device(batch, device, FIELDS_IN))
        targets = torch.from_numpy(batch["target_items"]).to(device)
        valid = targets >= 0
        # Logits only where there is a next item: padding would waste B x L x n_items memory.
        logits = model.item_logits(hidden[valid]).float()
        loss = F.cross_entropy(logits, targets[valid], reduction="sum")
        return {"item": (loss, valid.sum())}


def sasrec_config(cfg: RunConfig) -> None:
    cfg.model.causal = True
    cfg.model.side_inputs = False
    cfg.model.entry_head = False


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_common_args(parser)


def _main(args: argparse.Namespace, dist: Dist) -> None:
    cfg = load_config(RunConfig, args.config, args.overrides)
    parts, _ = prepare(cfg)
    sasrec_config(cfg)
    torch.manual_seed(cfg.train.seed)
    fit(cfg, ListTransformer(cfg.model), SasrecJob(cfg, parts), dist, resume=args.resume)


def main(args: argparse.Namespace) -> int:
    return run_command(_main, args)


# `evaluate --models sasrec:PATH` imports this module to find the adapter.
from training import models_eval  # noqa: E402, F401
