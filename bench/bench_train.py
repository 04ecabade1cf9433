"""Training throughput: measure a short CPU run, or report a finished run's tokens/s and MFU.

    # a short run on this machine (one thread by default: the machine is shared)
    python bench/bench_train.py measure --kind sasrec --config training/configs/ml-1m-sasrec.toml --steps 20
    # after the GPU script: tokens/s and model FLOPs utilisation of each run
    python bench/bench_train.py report runs/gpu-ml1m/runs --peak-tflops 989
    # the same step with the row-by-row batch builders the vectorised ones replaced, in one run
    python bench/bench_train.py measure --kind finetune --config training/configs/ml-1m-finetune.toml \
        --steps 10 --set finetune.init_from= --compare-builders
    # building batches on one core, row by row (before) and vectorised (now), against the floor of
    # gathering the same rows' items from the memory-mapped arrays; CPU time of this process, so
    # other jobs on a shared machine slow all three alike instead of whichever runs when they do
    python bench/bench_train.py batches --data data/ml-1m --max-len 200

Model FLOPs per token follow `training.model.flops_per_token` (6·N + attention + the output softmax
at the positions that compute full-vocabulary logits); tokens are real (non-padding) input tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.model import ModelConfig, flops_per_token  # noqa: E402


def logit_share(kind: str, config: dict, avg_len: float) -> float:
    """Share of input tokens whose full-vocabulary logits are computed in this kind of run."""
    if kind == "sasrec":
        return 1.0
    if kind == "pretrain":
        p = config["pretrain"]
        return p["mask_prob"] + p["query_prob"] / max(avg_len, 1.0)
    if kind == "finetune":
        return config["finetune"]["n_next"] / max(avg_len, 1.0)
    return 0.0


def report(runs: Path, peak_tflops: float) -> list[dict]:
    import torch

    rows = []
    for metrics in sorted(runs.glob("*/metrics.jsonl")):
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        ckpt_path = metrics.parent / "ckpt.pt"
        if not records or not ckpt_path.exists():
            continue
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt["kind"] not in ("sasrec", "pretrain", "finetune"):
            continue
        cfg = ModelConfig(**ckpt["model_config"])
        config = ckpt["config"]
        steady = records[1:] or records  # the first epoch holds warm-up and compilation
        tokens_per_s = statistics.median(r["tokens_per_s"] for r in steady)
        steps = records[0]["step"]
        avg_len = records[0]["tokens"] / max(1, steps * config["train"]["batch_size"])
        flops = flops_per_token(cfg, round(avg_len), logit_share(ckpt["kind"], config, avg_len))
        achieved = tokens_per_s * flops
        row = {
            "run": metrics.parent.name,
            "kind": ckpt["kind"],
            "epochs": len(records),
            "train_seconds": round(sum(r["seconds"] for r in records), 1),
            "tokens_per_s": round(tokens_per_s),
            "avg_tokens_per_row": round(avg_len, 1),
            "model_gflop_per_token": round(flops / 1e9, 6),
            "achieved_tflops": round(achieved / 1e12, 4),
            "mfu": round(achieved / (peak_tflops * 1e12), 6),
            "last": {k: v for k, v in records[-1].items() if k.startswith("val_")},
        }
        rows.append(row)
        print(json.dumps(row))
    return rows


def measure(
    kind: str, config: str, steps: int, threads: int, extra: list[str], compare: bool = False
) -> None:
    """A short CPU run; with `compare`, a second one with the row-by-row batch builders they
    replaced (second, so that the first run's warm-up counts against the vectorised builders)."""
    import torch

    torch.set_num_threads(threads)
    _measure(kind, config, steps, threads, extra, "vectorised" if compare else None)
    if compare:
        with _rowwise_builders():
            _measure(kind, config, steps, threads, extra, "row by row")


@contextlib.contextmanager
def _rowwise_builders() -> Iterator[None]:
    """The training jobs build batches with the old row-by-row builders inside this block."""
    from tests.training import rowwise_batches as old
    from training import finetune, pretrain, sasrec

    targets = [
        (pretrain, "pretrain_batch"),
        (finetune, "finetune_batch"),
        (finetune, "next_entries_batch"),
        (sasrec, "sasrec_batch"),
    ]
    saved = [getattr(module, name) for module, name in targets]
    for module, name in targets:
        setattr(module, name, getattr(old, name))
    try:
        yield
    finally:
        for (module, name), value in zip(targets, saved, strict=True):
            setattr(module, name, value)


def _measure(
    kind: str, config: str, steps: int, threads: int, extra: list[str], builders: str | None
) -> None:
    import torch

    from training.__main__ import main as cli

    out = ROOT / "runs" / "bench-train"
    overrides = [
        f"out_dir={out}",
        f"name={kind}",
        "train.epochs=1",
        f"train.steps_per_epoch={steps}",
        "train.val_users=0",
        *extra,
    ]
    argv = [kind, "--config", config, "--device", "cpu"]
    for o in overrides:
        argv += ["--set", o]
    started = time.perf_counter()
    if cli(argv) != 0:
        raise SystemExit("training failed")
    wall = time.perf_counter() - started
    record = json.loads((out / kind / "metrics.jsonl").read_text().splitlines()[-1])
    ckpt = torch.load(out / kind / "ckpt.pt", map_location="cpu", weights_only=False)
    from training.batches import UserParts, n_steps
    from training.dataset import Dataset

    parts = UserParts(Dataset(ckpt["config"]["data"]["path"]), ckpt["config"]["data"]["split"])
    per_user = ckpt["config"].get("finetune", {}).get("cuts_per_user", 1)
    samples = len(parts.users_with(min_train=2)) * per_user
    full_steps = n_steps(samples, ckpt["config"]["train"]["batch_size"])
    per_step = record["seconds"] / steps
    import tomllib

    epochs = tomllib.loads(Path(config).read_text()).get("train", {}).get("epochs", 10)
    print(
        json.dumps(
            {
                "kind": kind,
                **({"batch_builders": builders} if builders else {}),
                "threads": threads,
                "steps": steps,
                "tokens_per_s": record["tokens_per_s"],
                "seconds_per_step": round(per_step, 3),
                "steps_per_epoch": full_steps,
                "epoch_seconds_estimate": round(per_step * full_steps, 1),
                "epochs_in_config": epochs,
                "run_seconds_estimate": round(per_step * full_steps * epochs),
                "wall_seconds_incl_startup": round(wall, 1),
            }
        )
    )


def batches(
    data: str, max_len: int, n_batches: int, batch_size: int, repeats: int = 5
) -> list[dict]:
    """Each builder before (row by row, `tests/training/rowwise_batches.py`) and now (vectorised),
    against the floor of gathering the same users' newest `max_len` items, in one run."""
    import numpy as np

    from tests.training import rowwise_batches as old
    from training import batches as new
    from training.dataset import Dataset

    new.keep_freed_memory()  # as the trainer does
    dataset = Dataset(data)
    parts = new.UserParts(dataset, "loo")
    users = parts.users_with(min_train=2)
    rng = np.random.default_rng(0)
    draws = [
        (rng.choice(users, batch_size), rng.integers(0, 2**63, batch_size, dtype=np.uint64))
        for _ in range(n_batches)
    ]
    new.sasrec_batch(parts, draws[0][0], draws[0][1], max_len=max_len)  # the one-off row layout

    def kinds(module):  # type: ignore[no-untyped-def]
        pretrain = {"max_len": max_len, "mask_prob": 0.15, "query_prob": 0.5}
        return {
            "SASRec": lambda u, s: module.sasrec_batch(parts, u, s, max_len=max_len),
            "pretrain (masked entries)": lambda u, s: module.pretrain_batch(
                parts, u, s, **pretrain
            ),
            "fine-tune, one cut": lambda u, s: module.finetune_batch(
                parts, u, s, max_len=max_len, holdout_share=0.1, n_next=1
            ),
            "fine-tune, next entries": lambda u, s: module.next_entries_batch(
                parts, u, s, max_len=max_len, use_times=False
            ),
            "fine-tune, next entries, entry readout": lambda u, s: module.next_entries_batch(
                parts, u, s, max_len=max_len, use_times=False, queries=False
            ),
        }

    def floor(u: np.ndarray, _: np.ndarray) -> dict:  # the newest max_len items of each row
        ends = np.asarray(dataset.offsets)[u + 1]
        starts = np.maximum(np.asarray(dataset.offsets)[u], ends - max_len)
        return {
            "items": np.concatenate([dataset.items[a:b] for a, b in zip(starts, ends, strict=True)])
        }

    rows = []
    before, after = kinds(old), kinds(new)
    for name in before:
        # Interleaved repeats, best of each: load from other jobs hits all three alike.
        times: dict[str, list[float]] = {"floor": [], "before": [], "after": []}
        for _ in range(repeats):
            times["floor"].append(_timed(floor, draws))
            times["before"].append(_timed(before[name], draws))
            times["after"].append(_timed(after[name], draws))
        best = {key: min(values) for key, values in times.items()}
        # Each repeat's builder against the floor timed just before it: the two share whatever
        # load the machine had then, which the best of each (taken minutes apart) does not.
        paired = statistics.median(
            a / f for a, f in zip(times["after"], times["floor"], strict=True)
        )
        tokens = sum(int((after[name](u, s)["items"] > 0).sum()) for u, s in draws)
        row = {
            "batches": name,
            "max_len": max_len,
            "before_ms_per_batch": round(1e3 * best["before"] / n_batches, 2),
            "after_ms_per_batch": round(1e3 * best["after"] / n_batches, 2),
            "speedup": round(best["before"] / best["after"], 1),
            "before_times_the_gather_floor": round(best["before"] / best["floor"], 1),
            "after_times_the_gather_floor": round(best["after"] / best["floor"], 2),
            "after_times_the_floor_paired_median": round(paired, 2),
            "after_tokens_per_s_one_core": round(tokens / best["after"]),
        }
        rows.append(row)
        print(json.dumps(row))
    return rows


def _timed(build, draws) -> float:  # type: ignore[no-untyped-def]
    started = time.process_time()
    for users, seeds in draws:
        build(users, seeds)
    return time.process_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--kind", required=True, choices=("sasrec", "pretrain", "finetune"))
    m.add_argument("--config", required=True)
    m.add_argument("--steps", type=int, default=20)
    m.add_argument("--threads", type=int, default=1)
    m.add_argument("--set", dest="overrides", action="append", default=[])
    m.add_argument(
        "--compare-builders",
        action="store_true",
        help="run twice: with the row-by-row batch builders they replaced, then as is",
    )
    r = sub.add_parser("report")
    r.add_argument("runs", type=Path)
    r.add_argument("--peak-tflops", type=float, default=989.0, help="H200 dense bf16: 989")
    r.add_argument("--out", type=Path, help="also write the rows as JSON here")
    b = sub.add_parser("batches")
    b.add_argument("--data", default="data/ml-1m")
    b.add_argument("--max-len", type=int, default=200)
    b.add_argument("--n-batches", type=int, default=200)
    b.add_argument("--batch-size", type=int, default=128)
    b.add_argument("--repeats", type=int, default=5, help="interleaved repeats of each timing")
    args = parser.parse_args()
    if args.mode == "measure":
        measure(
            args.kind, args.config, args.steps, args.threads, args.overrides, args.compare_builders
        )
    elif args.mode == "batches":
        batches(args.data, args.max_len, args.n_batches, args.batch_size, args.repeats)
    else:
        rows = report(args.runs, args.peak_tflops)
        if args.out:
            args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
