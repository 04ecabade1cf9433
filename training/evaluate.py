"""`python -m training evaluate`: rank held-out items with baselines and our models (docs/evaluation.md#protocols).

Two phases per model, both over the dataset's split labels (0 train, 1 validation, 2 test):
- tuning: fit on train, each user's history = their train entries in order, targets = validation
  entries; the grid entry with the best NDCG@K (lowest RMSE for score models, highest mean status
  AUC for status-only models) wins;
- test: refit the winner on train + validation, history = train + validation entries in order,
  targets = test entries.
Every item in the history is removed from the ranking (score -inf) by the harness, for every model;
a held-out item that is also in the history is dropped from the targets (it would be unrankable).
Rankings are over every item with at least one interaction in the dataset (any label); ties go to
the lower item index (see training.metrics). A vocabulary may also hold catalogue titles nobody in
the data has listed: they can never be a target, so ranking them would only charge the models that
can score unseen titles (ours, through content vectors) with certain misses.

Protocols: `loo` (one target per user: HR@K, NDCG@K), `random` and `temporal` (several targets:
Recall@K, NDCG@K binary, and NDCG@K graded with gain 2^score − 1, unscored held-out items having
grade 0). Score models report RMSE on the scored held-out entries; those with a status head (ours,
`statusrate`) report the ROC AUC of their probability that a held-out entry is dropped ("drop AUC")
and plan-to-watch ("plan AUC") over every held-out entry (empty when the entries do not hold both
kinds). `cold` is scored like `random` over its own split (`training.splits.cold_split`): 10% of
the titles never appear in training and the targets are every interaction with them, ranked
against every item the user has not interacted with; run a content-only model beside ours
(`--models content:CATALOG`).

Writes `--out` (JSON, the shape of docs/evaluation.md#results-files) and the same table as Markdown beside it.

Plug-ins: models register in `training.baselines.interface` (re-exported here); see its docstring.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import training.baselines  # noqa: F401  (registers the built-in models)
from inference.animelist import STATUS_CODES, Status
from training.baselines.interface import (
    NotApplicable,
    Recommender,
    Registration,
    ScoreModel,
    StatusModel,
    TrainData,
    history_matrix,
    ranking_model,
    register_model,
    register_score_model,
    score_model,
)
from training.dataset import TEST, TRAIN, VALIDATION, Dataset, History
from training.errors import TrainingError
from training.metrics import RankingAccumulator, rmse, roc_auc, top_k

__all__ = [
    "Recommender",
    "ScoreModel",
    "StatusModel",
    "TrainData",
    "register_model",
    "register_score_model",
]

PROTOCOLS = ("loo", "random", "temporal", "cold")
METRIC_ORDER = (
    "HR@10",
    "Recall@10",
    "NDCG@10",
    "HR@20",
    "Recall@20",
    "NDCG@20",
    "NDCG@10-graded",
    "RMSE",
    "RMSE/bias",
    "drop AUC",
    "plan AUC",
)
# Status heads judged by ROC AUC: column name -> the status.
STATUS_METRICS = {
    "drop AUC": Status.DROPPED,
    "plan AUC": Status.PLAN_TO_WATCH,
}


class EvaluationError(TrainingError):
    """Bad input to the harness: reported as a clean CLI error."""


@dataclass(frozen=True)
class Phase:
    """What models see and what they are judged on in one phase (tuning or test)."""

    name: str
    data: TrainData
    users: np.ndarray  # evaluated users (those with at least one rankable target)
    targets: list[np.ndarray]  # per evaluated user: held-out items not in the history
    grades: list[np.ndarray]  # per evaluated user: the held-out items' scores (0 = unscored)
    statuses: list[np.ndarray]  # per evaluated user: the held-out items' status codes
    unlisted: np.ndarray  # [n_items] bool: items no one in the dataset has (never ranked)

    def histories(self, users: np.ndarray) -> list[History]:
        return [self.data.histories[u] for u in users.tolist()]


def build_phase(
    dataset: Dataset,
    labels: np.ndarray,
    fit_labels: Sequence[int],
    target_label: int,
    name: str,
    eval_users: np.ndarray | None = None,
) -> Phase:
    if len(labels) != dataset.n_interactions:
        raise EvaluationError(
            f"split has {len(labels)} labels for {dataset.n_interactions} interactions"
        )
    offsets = np.asarray(dataset.offsets)
    labels = np.asarray(labels)
    fit_mask_all = np.isin(labels, np.asarray(fit_labels))
    histories: list[History] = []
    users, targets, grades, statuses = [], [], [], []
    wanted = None if eval_users is None else set(eval_users.tolist())
    for user in range(dataset.n_users):
        full = dataset.history(user)
        lo, hi = int(offsets[user]), int(offsets[user + 1])
        history = full.select(fit_mask_all[lo:hi])
        histories.append(history)
        if wanted is not None and user not in wanted:
            continue
        held = full.select(labels[lo:hi] == target_label)
        rankable = ~np.isin(held.items, history.items)
        if rankable.any():
            users.append(user)
            targets.append(held.items[rankable].astype(np.int64))
            grades.append(held.scores[rankable].astype(np.int64))
            statuses.append(held.statuses[rankable].astype(np.int64))
    data = TrainData(
        matrix=history_matrix(histories, dataset.n_items),
        histories=histories,
        n_items=dataset.n_items,
        has_times=dataset.has_times,
    )
    return Phase(
        name,
        data,
        np.asarray(users, dtype=np.int64),
        targets,
        grades,
        statuses,
        dataset.unlisted_items(),
    )


def evaluate_ranking(
    model: Recommender,
    phase: Phase,
    ks: Sequence[int],
    single_target: bool,
    graded: bool,
    batch_size: int,
) -> dict[str, float]:
    accumulator = RankingAccumulator(ks, single_target=single_target, graded=graded)
    n_items = phase.data.n_items
    batches = range(0, len(phase.users), batch_size)
    for start in tqdm(batches, desc=f"{model.name} {phase.name}", unit="batch", leave=False):
        users = phase.users[start : start + batch_size]
        histories = phase.histories(users)
        scores = np.array(model.score(users, histories), dtype=np.float32, copy=True)
        if scores.shape != (len(users), n_items):
            raise EvaluationError(
                f"{model.name}.score returned shape {scores.shape}, "
                f"expected {(len(users), n_items)}"
            )
        if np.isnan(scores).any():
            raise EvaluationError(f"{model.name}.score returned NaN")
        for row, history in enumerate(histories):
            scores[row, history.items] = -np.inf
        scores[:, phase.unlisted] = -np.inf
        ranked = top_k(scores, accumulator.max_k)
        for row in range(len(users)):
            index = start + row
            accumulator.add(ranked[row], phase.targets[index], phase.grades[index])
    return accumulator.means()


def evaluate_scores(model: ScoreModel, phase: Phase, batch_size: int) -> tuple[float, int]:
    predicted, actual = [], []
    for start in range(0, len(phase.users), batch_size):
        pair_users, pair_items, pair_histories, pair_scores = [], [], [], []
        for index in range(start, min(start + batch_size, len(phase.users))):
            scored = phase.grades[index] > 0
            count = int(scored.sum())
            user = int(phase.users[index])
            pair_users.extend([user] * count)
            pair_items.extend(phase.targets[index][scored].tolist())
            pair_histories.extend([phase.data.histories[user]] * count)
            pair_scores.extend(phase.grades[index][scored].tolist())
        if not pair_users:
            continue
        out = model.predict(
            np.asarray(pair_users, dtype=np.int64),
            np.asarray(pair_items, dtype=np.int64),
            pair_histories,
        )
        predicted.append(np.asarray(out, dtype=np.float64))
        actual.append(np.asarray(pair_scores, dtype=np.float64))
    if not actual:
        raise EvaluationError(f"no scored held-out entries in the {phase.name} phase")
    all_actual = np.concatenate(actual)
    return rmse(np.concatenate(predicted), all_actual), len(all_actual)


def evaluate_statuses(
    model: StatusModel, phase: Phase, batch_size: int
) -> tuple[dict[str, float | None], dict[str, int]]:
    """ROC AUC of each status of STATUS_METRICS over every held-out entry (None where the entries
    hold only one kind), and how many entries there were and how many had each status."""
    codes = [STATUS_CODES[status] for status in STATUS_METRICS.values()]
    predicted, actual = [], []
    for start in range(0, len(phase.users), batch_size):
        users = phase.users[start : start + batch_size]
        lengths = [len(t) for t in phase.targets[start : start + batch_size]]
        pair_users = np.repeat(users, lengths)
        if len(pair_users) == 0:
            continue
        out = model.status_probabilities(
            pair_users,
            np.concatenate(phase.targets[start : start + batch_size]),
            [phase.data.histories[int(u)] for u in pair_users],
            codes,
        )
        out = np.asarray(out, dtype=np.float64)
        if out.shape != (len(pair_users), len(codes)):
            raise EvaluationError(
                f"{model.name}.status_probabilities returned shape {out.shape}, "
                f"expected {(len(pair_users), len(codes))}"
            )
        if np.isnan(out).any():
            raise EvaluationError(f"{model.name}.status_probabilities returned NaN")
        predicted.append(out)
        actual.append(np.concatenate(phase.statuses[start : start + batch_size]))
    if not actual:
        raise EvaluationError(f"no held-out entries in the {phase.name} phase")
    probabilities, statuses = np.concatenate(predicted), np.concatenate(actual)
    metrics: dict[str, float | None] = {}
    counts = {"entries": len(statuses)}
    for column, (name, code) in enumerate(zip(STATUS_METRICS, codes, strict=True)):
        metrics[name] = roc_auc(probabilities[:, column], statuses == code)
        counts[str(STATUS_METRICS[name])] = int((statuses == code).sum())
    return metrics, counts


def _mean_auc(metrics: dict[str, float | None]) -> float | None:
    """The status models' tuning criterion: the mean of the defined AUCs (None when none is)."""
    values = [v for v in metrics.values() if v is not None]
    return float(np.mean(values)) if values else None


@dataclass
class Settings:
    ks: tuple[int, ...]
    single_target: bool
    graded: bool
    batch_size: int
    tune: bool


def _candidates(registration: Registration, arg: str | None, tune: bool) -> list[str | None]:
    if arg is not None or not registration.grid or not tune:
        return [arg]
    return list(registration.grid)


def run_ranking_model(
    spec: str, validation: Phase | None, test: Phase, settings: Settings
) -> dict[str, Any]:
    name, _, arg = spec.partition(":")
    registration = ranking_model(name)
    candidates = _candidates(registration, arg or None, settings.tune and validation is not None)
    primary = f"NDCG@{min(settings.ks)}"
    tuning: list[dict[str, Any]] = []
    chosen = candidates[0]
    if len(candidates) > 1 and validation is not None:
        best = -np.inf
        for candidate in candidates:
            model: Recommender = registration.factory(candidate)  # type: ignore[assignment]
            model.fit(validation.data)
            metrics = evaluate_ranking(
                model, validation, settings.ks, settings.single_target, False, settings.batch_size
            )
            tuning.append({"params": candidate, primary: metrics[primary]})
            print(
                f"  {name}:{candidate}  validation {primary} {metrics[primary]:.4f}",
                file=sys.stderr,
            )
            if metrics[primary] > best:
                best, chosen = metrics[primary], candidate
    model = registration.factory(chosen)  # type: ignore[assignment]
    started = time.perf_counter()
    model.fit(test.data)
    fit_seconds = time.perf_counter() - started
    metrics = evaluate_ranking(
        model, test, settings.ks, settings.single_target, settings.graded, settings.batch_size
    )
    row: dict[str, Any] = {
        "model": name if not arg else spec,
        "kind": model.kind,
        "metrics": metrics,
        "label": model.name,
        "params": chosen,
        "n_users": len(test.users),
        "fit_seconds": round(fit_seconds, 2),
    }
    if tuning:
        row["tuning"] = tuning
    return row


def run_score_model(
    spec: str, validation: Phase | None, test: Phase, settings: Settings
) -> dict[str, Any]:
    """A score model (RMSE), a status model (status AUCs) or both. Tuning picks the lowest
    validation RMSE, or for a status-only model the highest mean status AUC."""
    name, _, arg = spec.partition(":")
    registration = score_model(name)
    candidates = _candidates(registration, arg or None, settings.tune and validation is not None)
    tuning: list[dict[str, Any]] = []
    chosen = candidates[0]
    if len(candidates) > 1 and validation is not None:
        best = np.inf
        for candidate in candidates:
            model = _score_or_status_model(spec, registration, candidate)
            model.fit(validation.data)
            if isinstance(model, ScoreModel):
                error, _ = evaluate_scores(model, validation, settings.batch_size)
                tuning.append({"params": candidate, "RMSE": error})
                print(f"  {name}:{candidate}  validation RMSE {error:.4f}", file=sys.stderr)
                loss = error
            else:
                assert isinstance(model, StatusModel)
                aucs, _ = evaluate_statuses(model, validation, settings.batch_size)
                mean = _mean_auc(aucs)
                tuning.append({"params": candidate, "mean status AUC": mean})
                print(f"  {name}:{candidate}  validation mean AUC {mean}", file=sys.stderr)
                loss = -mean if mean is not None else np.inf
            if loss < best:
                best, chosen = loss, candidate
    model = _score_or_status_model(spec, registration, chosen)
    model.fit(test.data)
    metrics: dict[str, float | None] = {}
    row: dict[str, Any] = {
        "model": name if not arg else spec,
        "kind": model.kind,
        "metrics": metrics,
        "label": model.name,
        "params": chosen,
    }
    if isinstance(model, ScoreModel):
        error, count = evaluate_scores(model, test, settings.batch_size)
        metrics["RMSE"] = error
        row["n_scored"] = count
    if isinstance(model, StatusModel):
        aucs, status_counts = evaluate_statuses(model, test, settings.batch_size)
        metrics.update(aucs)
        row["n_status"] = status_counts
    if tuning:
        row["tuning"] = tuning
    return row


def _score_or_status_model(
    spec: str, registration: Registration, arg: str | None
) -> ScoreModel | StatusModel:
    model = registration.factory(arg)
    if not isinstance(model, (ScoreModel, StatusModel)):
        raise EvaluationError(f"{spec} predicts neither scores nor statuses")
    return model


def add_bias_ratio(rows: list[dict[str, Any]]) -> None:
    """RMSE relative to the bias baseline, the comparison docs/evaluation.md#metrics describes."""
    bias = next((r for r in rows if r["model"].split(":")[0] == "bias"), None)
    if bias is None:
        return
    reference = bias["metrics"]["RMSE"]
    for row in rows:
        if row["metrics"].get("RMSE") is not None and reference > 0:
            row["metrics"]["RMSE/bias"] = row["metrics"]["RMSE"] / reference


def merge_results(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Rows of `current` replace same-named rows of `previous`; other rows stay in order."""
    for key in ("dataset", "protocol"):
        if previous.get(key) != current[key]:
            raise EvaluationError(
                f"cannot append: the existing file is for {key} {previous.get(key)!r}, "
                f"this run is {current[key]!r}"
            )
    new_names = {row["model"] for row in current["rows"]}
    rows = [row for row in previous.get("rows", []) if row["model"] not in new_names]
    merged = {**previous, **{k: v for k, v in current.items() if k not in ("rows", "command")}}
    merged["rows"] = rows + current["rows"]
    merged["command"] = previous.get("command", current["command"])
    commands = list(previous.get("commands", [previous.get("command")]))
    merged["commands"] = [c for c in commands if c] + [current["command"]]
    merged["notes"] = sorted(set(previous.get("notes", [])) | set(current.get("notes", [])))
    add_bias_ratio(merged["rows"])
    return merged


def _format(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def markdown_table(results: dict[str, Any]) -> str:
    rows = results["rows"]
    present = {name for row in rows for name in row["metrics"]}
    columns = [m for m in METRIC_ORDER if m in present] + sorted(present - set(METRIC_ORDER))
    lines = [
        "| model | kind | params | " + " | ".join(columns) + " |",
        "|---|---|---|" + "---:|" * len(columns),
    ]
    for row in rows:
        cells = [_format(row["metrics"][c]) if c in row["metrics"] else "–" for c in columns]
        params = row.get("params") or "–"
        lines.append(f"| {row['model']} | {row['kind']} | {params} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(results: dict[str, Any]) -> str:
    commands = results.get("commands") or [results["command"]]
    parts = [
        f"# {results['dataset']} — protocol `{results['protocol']}`",
        "",
        f"{results.get('n_users', '?')} evaluated users, {results.get('n_items', '?')} items; "
        "full ranking, items already in the history removed, ties to the lower item index; "
        "hyper-parameters tuned on the validation split, then refitted on train + validation. "
        "Several held-out items: Recall@K and NDCG@K are normalized by min(K, |held-out|).",
        "",
        "```",
        *commands,
        "```",
        "",
        markdown_table(results),
    ]
    notes = results.get("notes") or []
    if notes:
        parts += ["", *[f"- {note}" for note in notes]]
    return "\n".join(parts) + "\n"


def command_line(args: argparse.Namespace) -> str:
    parts = ["python", "-m", "training", "evaluate", "--data", str(args.data)]
    parts += ["--protocol", args.protocol]
    if args.split and args.split != args.protocol:
        parts += ["--split", args.split]
    if args.models:
        parts += ["--models", args.models]
    if args.score_models:
        parts += ["--score-models", args.score_models]
    if args.max_users:
        parts += ["--max-users", str(args.max_users), "--seed", str(args.seed)]
    if args.no_tune:
        parts.append("--no-tune")
    parts += ["--out", str(args.out)]
    if args.append:
        parts.append("--append")
    return shlex.join(parts)


def _split_list(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.protocol not in PROTOCOLS:
        raise EvaluationError(f"unknown protocol {args.protocol!r}; choose from {PROTOCOLS}")
    models = _split_list(args.models)
    scorers = _split_list(args.score_models)
    if not models and not scorers:
        raise EvaluationError("nothing to evaluate: give --models and/or --score-models")
    try:
        ks = tuple(sorted({int(k) for k in _split_list(args.k)}))
    except ValueError as exc:
        raise EvaluationError(f"--k must be comma-separated integers, got {args.k!r}") from exc
    if not ks or ks[0] < 1:
        raise EvaluationError("--k needs positive integers")
    if args.batch_size < 1:
        raise EvaluationError("--batch-size must be >= 1")
    # Registry look-ups first, so a typo fails before any fitting.
    for spec in models:
        ranking_model(spec.partition(":")[0])
    for spec in scorers:
        score_model(spec.partition(":")[0])

    dataset = Dataset(args.data)
    labels = np.asarray(dataset.split(args.split or args.protocol))
    eval_users = None
    if args.max_users:
        rng = np.random.default_rng(args.seed)
        count = min(args.max_users, dataset.n_users)
        eval_users = np.sort(rng.choice(dataset.n_users, size=count, replace=False))
    test = build_phase(dataset, labels, (TRAIN, VALIDATION), TEST, "test", eval_users)
    if len(test.users) == 0:
        raise EvaluationError("the split holds no test entries: nothing to evaluate")
    notes: list[str] = []
    validation: Phase | None = None
    if not args.no_tune:
        validation = build_phase(dataset, labels, (TRAIN,), VALIDATION, "validation", eval_users)
        if len(validation.users) == 0:
            validation = None
            notes.append("the split has no validation entries: default hyper-parameters, untuned")
    if args.protocol == "cold":
        notes.append(cold_note(dataset, labels))
    has_scores = bool(np.asarray(dataset.scores).any())
    settings = Settings(
        ks=ks,
        single_target=args.protocol == "loo",
        graded=args.protocol != "loo" and has_scores,
        batch_size=args.batch_size,
        tune=not args.no_tune,
    )
    rows: list[dict[str, Any]] = []
    for spec in models:
        try:
            rows.append(run_ranking_model(spec, validation, test, settings))
        except NotApplicable as exc:
            notes.append(f"{spec} skipped: {exc}")
            print(f"{spec} skipped: {exc}", file=sys.stderr)
    for spec in scorers:
        rows.append(run_score_model(spec, validation, test, settings))
    add_bias_ratio(rows)
    if any("drop AUC" in row["metrics"] for row in rows):
        notes.append(
            "drop AUC / plan AUC: ROC AUC of the predicted probability that a held-out entry is "
            "dropped / plan to watch, over every held-out entry (ties count one half); "
            "– for a model without a status head, or where the held-out entries are all of one kind"
        )
    if settings.graded:
        notes.append("NDCG@10-graded: gain 2^score − 1; unscored held-out items have grade 0")
    return {
        "dataset": dataset.name,
        "protocol": args.protocol,
        "command": command_line(args),
        "split": args.split or args.protocol,
        "n_users": len(test.users),
        "n_items": dataset.n_items,
        "rows": rows,
        "notes": notes,
    }


def cold_note(dataset: Dataset, labels: np.ndarray) -> str:
    """What the cold split hid; refuses a split whose hidden titles leak into training."""
    items = np.asarray(dataset.items)
    labels = np.asarray(labels)
    hidden = np.unique(items[labels == TEST])
    leaked = np.intersect1d(hidden, items[labels != TEST])
    if len(leaked):
        raise EvaluationError(
            f"not a cold split: {len(leaked)} held-out titles also have training interactions"
        )
    return (
        f"cold: {len(hidden)} of {dataset.n_items} titles ({len(hidden) / dataset.n_items:.1%}, "
        "drawn per popularity decile) never in training; targets = every interaction with them, "
        "ranked against every item the user has not interacted with"
    )


def write_results(results: dict[str, Any], out: Path, append: bool) -> dict[str, Any]:
    if append and out.exists():
        try:
            previous = json.loads(out.read_text())
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"cannot append: {out} is not valid JSON ({exc})") from exc
        results = merge_results(previous, results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    out.with_suffix(".md").write_text(markdown_report(results))
    return results


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="built dataset folder")
    parser.add_argument("--protocol", required=True, choices=PROTOCOLS)
    parser.add_argument("--split", help="split name (default: the protocol's name)")
    parser.add_argument(
        "--models", default="", help="ranking models, e.g. popularity,ease,ease:300,sasrec:PATH"
    )
    parser.add_argument(
        "--score-models",
        default="",
        help="score models for RMSE and status models for status AUCs, e.g. bias,mf,statusrate",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="results JSON (a .md is written beside it)"
    )
    parser.add_argument("--append", action="store_true", help="merge rows into an existing --out")
    parser.add_argument("--k", default="10,20", help="cut-offs (default 10,20)")
    parser.add_argument("--batch-size", type=int, default=512, help="users scored at once")
    parser.add_argument(
        "--max-users", type=int, default=0, help="evaluate a seeded sample of users"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-tune", action="store_true", help="skip validation grids")


def main(args: argparse.Namespace) -> int:
    results = write_results(run(args), args.out, args.append)
    print(markdown_table(results))
    for note in results.get("notes", []):
        print(f"note: {note}")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0
