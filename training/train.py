"""The training loop shared by pretrain, finetune, sasrec and ranker.

- Config: plain dataclasses filled from a TOML file, then `--set section.key=value` overrides.
- DDP: `setup_distributed` reads torchrun's environment (gloo on CPU, nccl on GPU); each rank takes
  its slice of every global batch, and losses are normalised by the *global* count of terms, so two
  ranks with half the batch each take exactly the step one process takes with the whole batch.
- Determinism and resume: batch contents depend only on (seed, epoch, step), torch's RNG is reseeded
  from (seed, step, rank) before every step, and checkpoints hold model, optimizer, scheduler and the
  position in the epoch: a resumed run continues the interrupted one step for step.
- Output in runs/<name>/: ckpt.pt (latest, written atomically), metrics.jsonl, loss.png, val.png.

A command supplies a `Job` (its batches, losses and validation); `fit` does the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import time
import tomllib
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn
from tqdm import tqdm

from training.errors import ConfigError
from training.metrics import ndcg_at_k, recall_at_k, top_k
from training.model import ModelConfig

Batch = dict[str, np.ndarray]
FIELDS_IN = ("items", "scores", "statuses", "times", "progress", "positions")  # model inputs
Losses = dict[str, tuple[torch.Tensor, torch.Tensor]]  # name -> (sum of terms, number of terms)
C = TypeVar("C")


@dataclass
class DataConfig:
    path: str = ""
    split: str = "loo"
    catalog: str = ""  # optional catalogue (episodes for progress; ranker features)
    # Vocabulary-order catalogue whose content vectors (`inference.content`) the model reads;
    # empty: ID embeddings only.
    content_catalog: str = ""
    # Train on the training and validation parts together: the test-time refit, as `evaluate`
    # refits every baseline on train + validation once validation has chosen its settings. Leaves
    # nothing to validate on (train.val_users must be 0).
    fit_validation: bool = False


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128  # global: per-rank batch x world size
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    # >0: batches of similar history lengths, sorted within runs of this many batches (less
    # padding; see batches.global_batches). 0: plain random batches.
    bucket_batches: int = 0
    steps_per_epoch: int = 0  # 0: one pass over the samples; >0 caps it (smoke runs)
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints; 0: at epoch ends only
    stop_after_epoch: int = 0  # stop (resumably) after this epoch; 0: run all epochs
    val_users: int = 1000  # validation users scored after each epoch (0: no validation)
    val_k: int = 10
    time_limit_s: float = 0.0  # stop (resumably) after the epoch that passes this; 0: no limit
    # >0: batches are built ahead in this many DataLoader worker processes (worker w builds steps
    # w, w + n, ...; they arrive in step order, the same batches). 0: in the training loop.
    loader_workers: int = 0


@dataclass
class RunConfig:
    name: str = "run"
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


# ---------------------------------------------------------------------------------------- config


def _coerce(value: Any, kind: Any, where: str) -> Any:
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table")
        return _fill(kind, value, where + ".")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = kind if isinstance(kind, type) else None
    if expected is not None and not isinstance(value, expected):
        raise ConfigError(f"{where} must be {expected.__name__}, got {value!r}")
    return value


def _fill(cls: type[C], table: dict[str, Any], where: str = "") -> C:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(where + k for k in unknown)}")
    config = cls()
    for name, value in table.items():
        setattr(config, name, _coerce(value, hints[name], f"{where}{name}"))
    return config


def _parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not KEY=VALUE")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare string such as a path
    return key.strip().split("."), value


def load_config(cls: type[C], path: str | Path | None, overrides: Sequence[str] = ()) -> C:
    """A config dataclass from a TOML file (missing keys keep defaults) and `a.b=value` overrides."""
    table: dict[str, Any] = {}
    if path is not None:
        try:
            table = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    for text in overrides:
        keys, value = _parse_override(text)
        node = table
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {key} is not a table")
        node[keys[-1]] = value
    return _fill(cls, table)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="TOML config file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=3e-4 (repeatable)",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--resume", action="store_true", help="continue from runs/<name>/ckpt.pt")


def config_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


# ------------------------------------------------------------------------------------ distributed


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> Dist:
    """Single process, or one rank of a torchrun job (its environment says which)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(0, 1, torch.device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    # DistributedDataParallel's constructor imports torch._dynamo, which imports
    # torch.distributed.nn.functional, whose functions have `group=group.WORLD` as a default
    # argument. Imported after init_process_group, those defaults hold the default group for
    # the life of the interpreter: destroy_process_group cannot free it, and its gloo threads and
    # sockets live on into interpreter shutdown while the other rank exits (a rank sometimes
    # aborted there: "terminate called without an active exception"). Imported first, they hold
    # None, and teardown_distributed really ends the group.
    importlib.import_module("torch._dynamo")
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        torch_dist.init_process_group("nccl")
        return Dist(rank, world, torch.device("cuda", local_rank))
    torch_dist.init_process_group("gloo")
    return Dist(rank, world, torch.device("cpu"))


def teardown_distributed() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def rank_slice(n: int, rank: int, world: int) -> slice:
    """This rank's contiguous part of a global batch of n samples."""
    per_rank = n // world
    return slice(rank * per_rank, (rank + 1) * per_rank)


# ------------------------------------------------------------------------------------------- job


def epoch_batches(job: Job, epoch: int, rank: int, world: int, workers: int = 0) -> Iterator[Batch]:
    """The job's batches of one epoch, in step order: built here, or with `workers` > 0 ahead of
    the loop in that many DataLoader worker processes, each building every workers-th step (a
    batch is a function of (seed, epoch, step), so they are the same batches)."""
    if workers <= 0:
        return job.batches(epoch, rank, world)
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _EpochBatches(job, epoch, rank, world),
        batch_size=None,
        num_workers=workers,
        collate_fn=_as_built,
        prefetch_factor=2,
    )
    return iter(loader)


class _EpochBatches(torch.utils.data.IterableDataset):
    """One epoch's batches for a DataLoader: each worker builds its shard of the steps. The
    DataLoader takes one batch from each worker in turn, which is step order again."""

    def __init__(self, job: Job, epoch: int, rank: int, world: int) -> None:
        self.job, self.epoch, self.rank, self.world = job, epoch, rank, world

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        shard = (0, 1) if info is None else (info.id, info.num_workers)
        return self.job.batches(self.epoch, self.rank, self.world, shard)


def _as_built(batch: Any) -> Any:
    """The DataLoader's collate: a batch stays the dict of numpy arrays its builder made."""
    return batch


class Job(Protocol):
    kind: str  # written into checkpoints: "pretrain", "finetune", "sasrec", "ranker"
    loss_weights: dict[str, float]

    def steps_per_epoch(self) -> int: ...

    def batches(
        self, epoch: int, rank: int, world: int, shard: tuple[int, int] = (0, 1)
    ) -> Iterator[Batch]:
        """This rank's slices of the epoch's global batches; a function of (seed, epoch) only.
        With shard = (i, n), only those of steps i, i + n, ... (a loader worker's share)."""
        ...

    def losses(self, model: nn.Module, batch: Batch, device: torch.device) -> Losses: ...

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]: ...

    def checkpoint_extra(self) -> dict[str, Any]: ...


def to_device(batch: Batch, device: torch.device, names: Sequence[str]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.ascontiguousarray(batch[name])).to(device) for name in names}


def ranking_metrics(
    scores: np.ndarray,
    seen: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    k: int,
    unlisted: np.ndarray | None = None,
) -> dict[str, float]:
    """HR/Recall@k and NDCG@k over full rankings with each user's seen items removed, and the
    `unlisted` items (no one in the dataset has them) never ranked, as `evaluate` ranks."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    for row, items in enumerate(seen):
        scores[row, items] = -np.inf
    if unlisted is not None:
        scores[:, unlisted] = -np.inf
    ranked = top_k(scores, k)
    hr = [recall_at_k(r, t, k) for r, t in zip(ranked, targets, strict=True)]
    ndcg = [ndcg_at_k(r, t, k) for r, t in zip(ranked, targets, strict=True)]
    return {f"val_HR@{k}": float(np.mean(hr)), f"val_NDCG@{k}": float(np.mean(ndcg))}


# ------------------------------------------------------------------------------ optimizer / ckpt


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; biases, norms and embeddings are not decayed (decaying rare items' rows shrinks them)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.ndim >= 2 and "emb" not in name:
            decay.append(param)
        else:
            no_decay.append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))


def warmup_cosine(warmup: int, total: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # steps done in the current epoch
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    # The interrupted epoch's running sums (loss, parts..., tokens) over all ranks, for its record.
    partial: list[float] = field(default_factory=list)
    # Length-bucketed batches: each loss part's global term count summed over all steps so far.
    count_sums: list[float] = field(default_factory=list)


def loss_denominator(counts: torch.Tensor, state: TrainState, *, bucketed: bool) -> torch.Tensor:
    """What each loss part's global sum is divided by this step: its term count, or with
    length-bucketed batches the mean count per step so far (`state.count_sums` is updated).

    Batches of long lists hold ten times the terms of batches of short ones; dividing each by its
    own count would weigh a short list's terms ten times as much. The running mean weighs every
    term alike, as random batches do.
    """
    if not bucketed:
        return counts
    sums = counts.double() + torch.tensor(
        state.count_sums or [0.0] * len(counts), dtype=torch.float64, device=counts.device
    )
    state.count_sums = sums.tolist()
    return (sums / (state.step + 1)).to(counts.dtype)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint intact


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return payload


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + rank) % (2**63)


# ------------------------------------------------------------------------------------------ plots


def write_plots(run_dir: Path, history: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    loss_keys = [k for k in history[-1] if k == "loss" or k.startswith("loss_")]
    val_keys = [k for k in history[-1] if k.startswith("val_")]
    for filename, keys, title in (
        ("loss.png", loss_keys, "training loss per epoch"),
        ("val.png", val_keys, "validation metrics per epoch"),
    ):
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for key in keys:
            ax.plot(epochs, [r.get(key, float("nan")) for r in history], marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_title(f"{run_dir.name}: {title}")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(run_dir / filename, dpi=100)
        plt.close(fig)


# ------------------------------------------------------------------------------------------- loop


class LossModule(nn.Module):
    """The job's losses as a module's forward, so DDP sees one forward per backward."""

    def __init__(self, model: nn.Module, job: Job) -> None:
        super().__init__()
        self.model = model
        self.job = job

    def forward(self, batch: Batch, device: torch.device) -> Losses:
        return self.job.losses(self.model, batch, device)


def fit(
    cfg: RunConfig, model: nn.Module, job: Job, dist: Dist, *, resume: bool = False
) -> TrainState:
    """Train `model` on `job`; returns the final state (its history holds the per-epoch metrics)."""
    tc = cfg.train
    run_dir = cfg.run_dir
    ckpt_path = run_dir / "ckpt.pt"
    model.to(dist.device)
    optimizer = make_optimizer(model, tc)
    steps_per_epoch = job.steps_per_epoch()
    if steps_per_epoch <= 0:
        raise ConfigError("no training batch: the dataset is smaller than one global batch")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(tc.warmup_steps, tc.epochs * steps_per_epoch)
    )
    state = TrainState()
    if resume and ckpt_path.exists():
        payload = load_checkpoint(ckpt_path)
        if payload["kind"] != job.kind:
            raise ConfigError(f"{ckpt_path} is a {payload['kind']} checkpoint, not {job.kind}")
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        state = TrainState(**payload["state"])
        if dist.is_main:
            print(f"resuming {ckpt_path}: epoch {state.epoch}, step {state.step}", flush=True)
    elif dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").write_text("")

    def save(running: torch.Tensor | None = None) -> None:
        state.partial = []
        if running is not None:
            running = running.clone()
            if dist.world > 1:
                torch_dist.all_reduce(running)
            state.partial = running.tolist()
        if dist.is_main:
            save_checkpoint(
                ckpt_path,
                {
                    "kind": job.kind,
                    "model": model.state_dict(),
                    "model_config": dataclasses.asdict(getattr(model, "cfg")),  # noqa: B009
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "state": dataclasses.asdict(state),
                    "config": config_dict(cfg),
                    **job.checkpoint_extra(),
                },
            )
        if dist.world > 1:
            torch_dist.barrier()

    net: nn.Module = LossModule(model, job)
    if dist.world > 1:
        net = nn.parallel.DistributedDataParallel(net)
    use_bf16 = dist.device.type == "cuda"
    fit_started = time.perf_counter()
    names = list(job.loss_weights)
    weights = torch.tensor([job.loss_weights[n] for n in names], device=dist.device)
    for epoch in range(state.epoch, tc.epochs):
        net.train()
        started = time.perf_counter()
        # Running sums: loss, its parts, tokens. A resumed epoch starts from the saved global sums
        # on rank 0 (the others from 0), so the epoch's record matches an uninterrupted run.
        running = torch.zeros(2 + len(names), dtype=torch.float64, device=dist.device)
        if state.partial and dist.is_main:
            running += torch.tensor(state.partial, dtype=torch.float64, device=dist.device)
        bar = tqdm(
            total=steps_per_epoch,
            initial=state.step_in_epoch,
            desc=f"{cfg.name} epoch {epoch + 1}/{tc.epochs}",
            disable=not dist.is_main,
            leave=False,
        )
        batches = epoch_batches(job, epoch, dist.rank, dist.world, tc.loader_workers)
        for index, batch in enumerate(batches):
            if index < state.step_in_epoch:
                continue  # done before the interruption; the batch was rebuilt only to skip it
            torch.manual_seed(_step_seed(tc.seed, state.step, dist.rank))
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                parts = net(batch, dist.device)
            sums = torch.stack([parts[n][0].float() for n in names])
            counts = torch.stack([parts[n][1].float() for n in names])
            if dist.world > 1:
                torch_dist.all_reduce(counts)
            denominator = loss_denominator(counts, state, bucketed=tc.bucket_batches > 0)
            # Each rank's share of the global mean; DDP averages gradients over ranks, hence x world.
            means = sums * dist.world / denominator.clamp(min=1.0)
            loss = (weights * means).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            scheduler.step()
            state.step += 1
            state.step_in_epoch = index + 1
            running[:-1] += torch.cat([loss.detach()[None], means.detach()]).double()
            running[-1] += float((batch["items"] != 0).sum())
            bar.update(1)
            if dist.is_main and state.step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
            if tc.checkpoint_every and state.step % tc.checkpoint_every == 0:
                save(running)
        bar.close()
        done_steps = max(1, steps_per_epoch)
        totals = running
        if dist.world > 1:
            torch_dist.all_reduce(totals)
        totals[:-1] /= dist.world * done_steps
        seconds = time.perf_counter() - started
        record: dict[str, Any] = {"epoch": epoch + 1, "step": state.step, "loss": float(totals[0])}
        record.update({f"loss_{n}": float(totals[1 + i]) for i, n in enumerate(names)})
        record["tokens"] = int(totals[-1])
        record["seconds"] = round(seconds, 3)
        record["tokens_per_s"] = round(float(totals[-1]) / max(seconds, 1e-9), 1)
        if dist.is_main and tc.val_users > 0:
            model.eval()
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                record.update(job.validate(model, dist.device))
        state.epoch = epoch + 1
        state.step_in_epoch = 0
        state.history.append(record)
        if dist.is_main:
            with (run_dir / "metrics.jsonl").open("a") as out:
                out.write(json.dumps(record) + "\n")
            write_plots(run_dir, state.history)
            shown = {k: v for k, v in record.items() if k != "epoch"}
            print(f"[{cfg.name}] epoch {epoch + 1}: {json.dumps(shown)}", flush=True)
        save()
        if tc.stop_after_epoch and state.epoch >= tc.stop_after_epoch:
            break
        over = torch.tensor(
            [float(bool(tc.time_limit_s) and time.perf_counter() - fit_started > tc.time_limit_s)],
            device=dist.device,
        )
        if dist.world > 1:
            torch_dist.all_reduce(over, op=torch_dist.ReduceOp.MAX)  # all ranks stop together
        if over.item():
            if dist.is_main:
                print(f"[{cfg.name}] time limit {tc.time_limit_s:.0f} s reached", flush=True)
            break
    return state
