"""`python -m training export`: a trained model as a serving bundle (docs/model.md#export-and-parity), checked for parity.

    python -m training export --finetuned runs/anime-finetune/ckpt.pt \
        --ranker runs/anime-ranker/ckpt.pt --catalog data/catalog.json.gz --out exports/default

Writes `exports/<name>/`:
  encoder.onnx       token fields [batch, seq] (int64) -> watch_logits, predicted_scores,
                     drop_probs [batch, n_items] and user_vector [batch, d]
  encoder.int8.onnx  (--int8) the same, dynamically quantized
  ranker.onnx        features [batch, candidates, n_features] -> utilities [batch, candidates];
                     score_features [batch, asked, n_score_features] -> scores [batch, asked]
  item_facts.npz     per-item arrays in vocabulary order: the ranker's facts (log_popularity,
                     franchise, genres, item-item neighbours), the item embeddings ("because
                     you liked", diversity) and `/similar`'s item-kNN neighbours (cooc_items,
                     cooc_weights). The data-derived facts are refitted on every
                     interaction of the training dataset (train, validation and test parts), as
                     `evaluate` refits them on train + validation; --checkpoint-facts keeps the
                     ranker checkpoint's (training part only).
  catalog.json.gz    the catalogue rows of the model's vocabulary, in vocabulary order
  manifest.json      encoding parameters, training data, metrics (parity included), sha256s

The entry head scores every item in one pass: its first layer over [user state, item vector] splits
into W_u·state + (W_i·item + b), and the item half is a constant folded in at export, so scoring
all items costs one [n_items, d] add and the small second layer instead of a [n_items, 2d] matmul.

Parity runs right after export on fresh random histories of sizes the export never saw: fp32 must
match PyTorch to 1e-4 with identical top-10 per row, or no manifest is written (a folder without a
manifest is not a bundle); the int8 encoder's top-10 overlap is measured and recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inference.animelist import N_STATUS_CODES, STATUS_CODES, Status
from inference.bundle import CATALOG, ENCODER, RANKER, RANKER_INPUTS, RANKER_OUTPUTS, write_manifest
from inference.catalog import Catalog, load_catalog, save_catalog
from inference.encoding import (
    FIELDS,
    ITEM_OFFSET,
    MASK_ITEM,
    N_PROGRESS_TOKENS,
    N_SCORE_FEATURES,
    N_SCORE_TOKENS,
    N_TIME_TOKENS,
    PAD_ITEM,
    RANKER_FEATURES,
    SCORE_FEATURES,
    SCORE_MASK,
    STATUS_MASK,
    TIME_NOW,
    TIME_UNKNOWN,
    ItemFacts,
)
from inference.errors import AnimerecError, CatalogError
from training.model import SCORE_CENTER, ListTransformer, ModelConfig
from training.train import load_checkpoint
from training.vocab_catalog import vocab_catalog, vocab_keys

ENCODER_INT8 = "encoder.int8.onnx"
ITEM_FACTS = "item_facts.npz"
COOC_K = 64  # item-kNN neighbours per title for `/similar`
OPSET = 17
ATOL = 1e-4
TOP_K = 10
ENCODER_OUTPUTS = ("watch_logits", "predicted_scores", "drop_probs", "user_vector")
DROPPED = STATUS_CODES[Status.DROPPED]


class ExportError(AnimerecError, RuntimeError):
    """The export cannot produce a bundle that serves exactly what was trained."""


class EncoderGraph(nn.Module):
    """The fine-tuned transformer as serving asks it: the "now" query in the last column."""

    def __init__(self, model: ListTransformer) -> None:
        super().__init__()
        if not model.cfg.entry_head:
            raise ExportError("the model has no entry head (a SASRec checkpoint?)")
        self.model = model
        first, _act, second = model.entry_head
        assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
        d = model.cfg.d_model
        with torch.no_grad():
            items = model.item_vectors()
            # Constant per item: the item half of the entry head's first layer, bias included.
            self.item_part: torch.Tensor
            self.register_buffer("item_part", items @ first.weight[:, d:].t() + first.bias)
        self.user_weight = nn.Parameter(first.weight[:, :d].detach().clone())
        self.second = second

    def forward(
        self,
        items: torch.Tensor,
        scores: torch.Tensor,
        statuses: torch.Tensor,
        times: torch.Tensor,
        progress: torch.Tensor,
        positions: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        model = self.model
        batch = {
            "items": items,
            "scores": scores,
            "statuses": statuses,
            "times": times,
            "progress": progress,
            "positions": positions,
        }
        hidden = model(batch)
        state = hidden[:, -1]
        if model.cfg.read_last_entry or model.cfg.readout == "entry":
            # As ListTransformer.query_states: the newest entry's state (the column before the
            # query) when there is one, added to the query's or alone.
            has_entry = (items[:, -2:-1] != PAD_ITEM).to(state.dtype)
            newest = has_entry * hidden[:, -2]
            state = newest if model.cfg.readout == "entry" else state + newest
        logits = model.item_logits(state)
        inner = nn.functional.gelu(self.item_part[None] + (state @ self.user_weight.t())[:, None])
        out = self.second(inner)
        predicted = (out[..., 0] + _score_center()).clamp(1.0, 10.0)
        drops = torch.softmax(out[..., 1:], dim=-1)[..., DROPPED]
        return logits, predicted, drops, state


def _score_center() -> float:
    return float(SCORE_CENTER)


class RankerGraph(nn.Module):
    def __init__(self, ranker: nn.Module, n_features: int) -> None:
        super().__init__()
        self.ranker = ranker
        self.n_features = n_features  # the absolute features alone, or the list-relative ones too

    def forward(
        self, features: torch.Tensor, score_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        utilities, scores = self.ranker(features, score_features)
        return utilities, scores.clamp(1.0, 10.0)


# ------------------------------------------------------------------------------------ inputs


def random_inputs(
    rng: np.random.Generator, batch: int, width: int, n_items: int, max_len: int
) -> dict[str, np.ndarray]:
    """Left-padded random histories (different lengths per row) with the query in the last column."""
    arrays = {name: np.zeros((batch, width), dtype=np.int64) for name in FIELDS}
    arrays["times"][:] = TIME_UNKNOWN
    for row in range(batch):
        n = int(rng.integers(0, width)) if row else width - 1  # row 0 fills the width
        start = width - 1 - n
        cols = slice(start, width - 1)
        arrays["items"][row, cols] = ITEM_OFFSET + rng.choice(n_items, size=n, replace=False)
        arrays["scores"][row, cols] = rng.integers(0, N_SCORE_TOKENS - 1, n)
        arrays["statuses"][row, cols] = 1 + rng.integers(0, N_STATUS_CODES, n)
        arrays["times"][row, cols] = rng.integers(1, N_TIME_TOKENS, n)
        arrays["progress"][row, cols] = rng.integers(0, N_PROGRESS_TOKENS, n)
        arrays["positions"][row, start:] = np.minimum(np.arange(n, -1, -1), max_len - 1)
        arrays["items"][row, -1] = MASK_ITEM
        arrays["scores"][row, -1] = SCORE_MASK
        arrays["statuses"][row, -1] = STATUS_MASK
        arrays["times"][row, -1] = TIME_NOW
    return arrays


def _torch_outputs(graph: nn.Module, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        outs = graph(*(torch.from_numpy(inputs[name]) for name in FIELDS))
    return [o.float().numpy() for o in outs]


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's k best, best first (ties to the lower index)."""
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


# ------------------------------------------------------------------------------------ export


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The TorchScript exporter warns that it is legacy and that d_model is traced as a constant
    (it is one); parity, not the tracer's warnings, is what decides whether the export is right."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def export_encoder(graph: EncoderGraph, path: Path, n_items: int, max_len: int) -> None:
    example = random_inputs(np.random.default_rng(0), 3, min(9, max_len), n_items, max_len)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in FIELDS}
    dynamic.update({name: {0: "batch"} for name in ENCODER_OUTPUTS})
    with _quiet_exporter():
        torch.onnx.export(
            graph,
            tuple(torch.from_numpy(example[name]) for name in FIELDS),
            str(path),
            input_names=list(FIELDS),
            output_names=list(ENCODER_OUTPUTS),
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    _fix_bool_eyelike(path)


def _fix_bool_eyelike(path: Path) -> None:
    """onnxruntime has no boolean EyeLike (the model's "every token sees itself" mask): compute it
    in int64 and cast, which is the same matrix."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    types = {
        value.name: value.type.tensor_type.elem_type
        for value in onnx.shape_inference.infer_shapes(model).graph.value_info
    }
    nodes = []
    for node in model.graph.node:
        dtype = next((a.i for a in node.attribute if a.name == "dtype"), None)
        if dtype is None:
            dtype = types.get(node.output[0])
        if node.op_type != "EyeLike" or dtype != TensorProto.BOOL:
            nodes.append(node)
            continue
        source, target = node.input[0], node.output[0]
        as_int, eye_int = f"{source}_as_int64", f"{target}_int64"
        nodes.append(helper.make_node("Cast", [source], [as_int], to=TensorProto.INT64))
        eye = helper.make_node("EyeLike", [as_int], [eye_int], dtype=TensorProto.INT64)
        for attribute in node.attribute:
            if attribute.name not in ("dtype",):
                eye.attribute.append(attribute)
        nodes.append(eye)
        nodes.append(helper.make_node("Cast", [eye_int], [target], to=TensorProto.BOOL))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_ranker(graph: RankerGraph, path: Path) -> None:
    example = (torch.randn(2, 5, graph.n_features), torch.randn(2, 3, N_SCORE_FEATURES))
    with _quiet_exporter():
        torch.onnx.export(
            graph,
            example,
            str(path),
            input_names=list(RANKER_INPUTS),
            output_names=list(RANKER_OUTPUTS),
            dynamic_axes={
                "features": {0: "batch", 1: "candidates"},
                "score_features": {0: "batch", 1: "asked"},
                "utilities": {0: "batch", 1: "candidates"},
                "scores": {0: "batch", 1: "asked"},
            },
            opset_version=OPSET,
            dynamo=False,
        )


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def encoder_parity(
    graph: EncoderGraph, path: Path, n_items: int, max_len: int, *, seed: int = 1
) -> dict[str, Any]:
    """fp32 encoder vs PyTorch on fresh random histories of a few shapes."""
    session = _session(path)
    rng = np.random.default_rng(seed)
    worst: dict[str, float] = dict.fromkeys(ENCODER_OUTPUTS, 0.0)
    same_top = True
    rows = 0
    for batch, width in ((1, 2), (4, min(37, max_len)), (2, max_len)):
        inputs = random_inputs(rng, batch, width, n_items, max_len)
        expected = _torch_outputs(graph, inputs)
        got = session.run(list(ENCODER_OUTPUTS), inputs)
        for name, e, g in zip(ENCODER_OUTPUTS, expected, got, strict=True):
            worst[name] = max(worst[name], float(np.abs(e - g).max()))
        same_top &= bool((top_k_rows(expected[0], TOP_K) == top_k_rows(got[0], TOP_K)).all())
        rows += batch
    return {
        "rows": rows,
        "max_abs_diff": worst,
        "top10_identical": same_top,
        "passed": same_top and max(worst.values()) <= ATOL,
    }


def int8_overlap(
    graph: EncoderGraph, path: Path, n_items: int, max_len: int, *, seed: int = 2
) -> dict[str, Any]:
    """Mean share of PyTorch's top-10 watch items that the int8 encoder also puts in its top-10."""
    session = _session(path)
    rng = np.random.default_rng(seed)
    overlaps: list[float] = []
    score_diff = 0.0
    for width in (8, min(64, max_len), max_len):
        inputs = random_inputs(rng, 8, width, n_items, max_len)
        expected = _torch_outputs(graph, inputs)
        got = session.run(list(ENCODER_OUTPUTS), inputs)
        score_diff = max(score_diff, float(np.abs(expected[1] - got[1]).max()))
        for e, g in zip(top_k_rows(expected[0], TOP_K), top_k_rows(got[0], TOP_K), strict=True):
            overlaps.append(len(set(e.tolist()) & set(g.tolist())) / TOP_K)
    return {
        "rows": len(overlaps),
        "top10_overlap_mean": float(np.mean(overlaps)),
        "top10_overlap_min": float(np.min(overlaps)),
        "predicted_score_max_abs_diff": score_diff,
    }


def ranker_parity(graph: RankerGraph, path: Path, *, seed: int = 3) -> dict[str, Any]:
    session = _session(path)
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(3, 211, graph.n_features)).astype(np.float32)
    asked = rng.normal(size=(3, 17, N_SCORE_FEATURES)).astype(np.float32)
    with torch.no_grad():
        expected, expected_scores = (
            t.numpy() for t in graph(torch.from_numpy(features), torch.from_numpy(asked))
        )
    got, got_scores = session.run(
        list(RANKER_OUTPUTS), {"features": features, "score_features": asked}
    )
    diff = float(max(np.abs(expected - got).max(), np.abs(expected_scores - got_scores).max()))
    same_top = bool((top_k_rows(expected, TOP_K) == top_k_rows(got, TOP_K)).all())
    return {"max_abs_diff": diff, "top10_identical": same_top, "passed": same_top and diff <= ATOL}


# ---------------------------------------------------------------------------------- bundle parts


def load_models(
    finetuned: Path, ranker: Path
) -> tuple[ListTransformer, dict[str, Any], nn.Module, dict[str, Any]]:
    from training.ranker import RankerNet, RankerNetConfig

    ft = load_checkpoint(finetuned)
    if ft.get("kind") not in ("finetune", "pretrain"):
        raise ExportError(f"{finetuned} is not a fine-tuned (or pretrained) list transformer")
    model = ListTransformer(ModelConfig(**ft["model_config"]))
    model.load_state_dict(ft["model"])
    model.eval()
    rk = load_checkpoint(ranker)
    if rk.get("kind") != "ranker":
        raise ExportError(f"{ranker} is not a ranker checkpoint")
    net = RankerNet(RankerNetConfig(**rk["model_config"]))
    net.load_state_dict(rk["model"])
    net.eval()
    if Path(str(rk.get("finetuned", ""))).resolve() != finetuned.resolve():
        print(
            f"warning: the ranker was trained on {rk.get('finetuned')!r}, exporting it with "
            f"{finetuned}",
            file=sys.stderr,
        )
    return model, ft, net, rk


def bundle_catalog(full_catalog: Path, dataset: Path, n_items: int) -> Catalog:
    """The catalogue rows of the model's vocabulary, in vocabulary order."""
    keys = vocab_keys(dataset)
    if len(keys) != n_items:
        raise ExportError(f"{dataset} has {len(keys)} items, the model {n_items}")
    catalog = load_catalog(full_catalog)
    if [item.mal_id for item in catalog] == keys:
        return catalog
    derived, missing = vocab_catalog(catalog, keys, dataset.name)
    if missing:
        print(f"note: {missing} vocabulary items are not in {full_catalog}", file=sys.stderr)
    return derived


def check_episodes(catalog: Catalog, trained_with: str) -> bool:
    """Whether the model was trained with catalogue episode counts (the progress input); if so,
    the bundle's catalogue must give the same counts, or progress tokens would differ."""
    if not trained_with:
        return False
    try:
        trained = load_catalog(trained_with)
    except (CatalogError, OSError) as exc:
        raise ExportError(
            f"the model was trained with the catalogue {trained_with} ({exc}); it is needed to "
            "check that the bundle's episode counts are the ones training saw"
        ) from exc
    if [i.episodes or 0 for i in trained] != [i.episodes or 0 for i in catalog]:
        raise ExportError(
            f"episode counts in the bundle's catalogue differ from {trained_with}, which the "
            "model was trained with: the progress input would not match training"
        )
    return True


def serving_facts(ranker_payload: dict[str, Any], dataset: Path, *, has_times: bool) -> ItemFacts:
    """The ranker's facts with the data-derived ones refitted on all of `dataset`."""
    from training.dataset import Dataset
    from training.ranker import refit_facts

    if not (dataset / "items.npy").is_file():
        raise ExportError(
            f"the training dataset {dataset} is not here to refit the item facts on; "
            "build it, or pass --checkpoint-facts to keep the ranker checkpoint's"
        )
    data = Dataset(dataset)
    offsets = np.asarray(data.offsets)
    return refit_facts(
        ranker_payload,
        np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)),
        np.asarray(data.items),
        np.asarray(data.scores),
        n_items=data.n_items,
        has_times=has_times,
    )


def cooc_arrays(dataset: Path, split: str | None = None, k: int = COOC_K) -> dict[str, np.ndarray]:
    """`/similar`'s item-kNN neighbours (`training.neighbours.fit_cooccurrence`) as the
    `cooc_items` / `cooc_weights` arrays of item_facts.npz: fitted on every interaction of
    `dataset`, or on `split`'s training part only. Empty when the dataset is not here (the bundle
    then serves `/similar` without them)."""
    from training.batches import UserParts
    from training.dataset import Dataset
    from training.neighbours import binary_matrix, fit_cooccurrence, interaction_matrix

    if not (dataset / "items.npy").is_file():
        return {}
    data = Dataset(dataset)
    if split is None:
        offsets = np.asarray(data.offsets)
        users = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        matrix = binary_matrix(users, np.asarray(data.items), len(offsets) - 1, data.n_items)
    else:
        matrix = interaction_matrix(UserParts(data, split))
    items, weights = fit_cooccurrence(matrix, k)
    return {"cooc_items": items, "cooc_weights": weights}


def write_item_facts(
    path: Path,
    model: ListTransformer,
    facts: ItemFacts,
    extra: dict[str, np.ndarray] | None = None,
) -> None:
    """Item facts, the item vectors, `extra` arrays (`cooc_arrays`), and for a content model
    `item_trained` (whether each title had training interactions: false = new to the model,
    ranked from its content alone)."""
    with torch.no_grad():
        embeddings = model.item_vectors().detach().float().numpy()
    arrays = {
        **facts.as_arrays(),
        **(extra or {}),
        "item_embeddings": embeddings.astype(np.float32),
    }
    if model.cfg.content_dim > 0:
        arrays["item_trained"] = model.has_id.detach().cpu().numpy().astype(bool)
    np.savez(path, allow_pickle=False, **arrays)


def training_summary(ft_payload: dict[str, Any], dataset: Path) -> dict[str, Any]:
    meta_path = dataset / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    stats_path = dataset / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    config = ft_payload.get("config", {})
    return {
        "dataset": meta.get("name", dataset.name),
        "users": meta.get("n_users"),
        "items": meta.get("n_items"),
        "interactions": meta.get("n_interactions"),
        "has_times": meta.get("has_times"),
        "synthetic": meta.get("synthetic"),
        "split": config.get("data", {}).get("split"),
        "length_percentiles": stats.get("length_percentiles"),
        "finetune_epochs": ft_payload.get("state", {}).get("epoch"),
    }


def read_metrics(path: Path | None) -> dict[str, Any]:
    """Rows of an `evaluate --out` JSON file, kept as they are (None: no evaluation given)."""
    if path is None:
        return {}
    document = json.loads(path.read_text())
    return {"evaluation": document, "evaluation_file": str(path)}


def export_bundle(
    finetuned: Path,
    ranker: Path,
    catalog_path: Path,
    out: Path,
    *,
    name: str | None = None,
    int8: bool = False,
    metrics_file: Path | None = None,
    checkpoint_facts: bool = False,
) -> dict[str, Any]:
    """Write a verified bundle to `out` (replacing it only once everything passed)."""
    model, ft, net, rk = load_models(finetuned, ranker)
    cfg = model.cfg
    dataset = Path(str(ft.get("dataset", "")))
    has_times = bool(ft.get("has_times", True))
    if checkpoint_facts:
        facts = ItemFacts.from_arrays(rk["facts"])
    else:
        facts = serving_facts(rk, dataset, has_times=has_times)
    catalog = bundle_catalog(catalog_path, dataset, cfg.n_items)
    uses_episodes = check_episodes(catalog, str(ft.get("catalog") or ""))
    encoder = EncoderGraph(model).eval()
    ranker_graph = RankerGraph(net, int(rk["model_config"]["n_features"])).eval()
    torch.manual_seed(0)

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        export_encoder(encoder, work / ENCODER, cfg.n_items, cfg.max_len)
        export_ranker(ranker_graph, work / RANKER)
        parity = {
            "encoder_fp32": encoder_parity(encoder, work / ENCODER, cfg.n_items, cfg.max_len),
            "ranker_fp32": ranker_parity(ranker_graph, work / RANKER),
        }
        failed = [k for k, v in parity.items() if not v["passed"]]
        if failed:
            raise ExportError(
                f"parity against PyTorch failed for {', '.join(failed)}: "
                f"{json.dumps(parity)}; no bundle written"
            )
        extra = [ITEM_FACTS]
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(
                str(work / ENCODER), str(work / ENCODER_INT8), weight_type=QuantType.QInt8
            )
            parity["encoder_int8"] = int8_overlap(
                encoder, work / ENCODER_INT8, cfg.n_items, cfg.max_len
            )
            extra.append(ENCODER_INT8)
        save_catalog(catalog, work / CATALOG)
        split = ft.get("config", {}).get("data", {}).get("split") if checkpoint_facts else None
        write_item_facts(work / ITEM_FACTS, model, facts, cooc_arrays(dataset, split))
        encoding = {
            "max_len": cfg.max_len,
            "n_items": cfg.n_items,
            "d_model": cfg.d_model,
            "n_layers": cfg.n_layers,
            "n_heads": cfg.n_heads,
            "has_times": has_times,
            "use_times": cfg.use_times,
            "causal": cfg.causal,
            "append_query": True,
            "read_last_entry": cfg.read_last_entry,
            "readout": cfg.readout,
            "progress_from_catalog_episodes": uses_episodes,
            "tokens": {
                "pad_item": PAD_ITEM,
                "mask_item": MASK_ITEM,
                "item_offset": ITEM_OFFSET,
                "score_mask": SCORE_MASK,
                "status_mask": STATUS_MASK,
                "time_now": TIME_NOW,
                "time_unknown": TIME_UNKNOWN,
            },
            "encoder_inputs": list(FIELDS),
            "encoder_outputs": list(ENCODER_OUTPUTS),
            "ranker_features": list(RANKER_FEATURES[: int(rk["model_config"]["n_features"])]),
            "score_features": list(SCORE_FEATURES),
            "ranker_candidates": int(rk.get("candidates", 200)),
            "item_facts": ITEM_FACTS,
            "int8_encoder": ENCODER_INT8 if int8 else None,
            "opset": OPSET,
        }
        metrics = {"parity": parity, **read_metrics(metrics_file)}
        manifest = write_manifest(
            work,
            name=name or out.name,
            encoding=encoding,
            training_data={
                **training_summary(ft, dataset),
                "finetuned_checkpoint": str(finetuned),
                "ranker_checkpoint": str(ranker),
                "item_facts_from": "ranker checkpoint (training part)"
                if checkpoint_facts
                else "every interaction of the dataset",
            },
            metrics=metrics,
            extra_files=extra,
        )
        if out.exists():
            notes = out / "README.md"  # the bundle's documentation is not part of the model
            if notes.is_file():
                shutil.copy2(notes, work / "README.md")
            shutil.rmtree(out)
        work.rename(out)
    finally:
        if work.exists():
            shutil.rmtree(work)
    return manifest


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--finetuned", required=True, type=Path, help="fine-tuned checkpoint")
    parser.add_argument("--ranker", required=True, type=Path, help="ranker checkpoint")
    parser.add_argument(
        "--catalog", required=True, type=Path, help="the catalogue (full, or in vocabulary order)"
    )
    parser.add_argument("--out", required=True, type=Path, help="bundle folder, e.g. exports/x")
    parser.add_argument("--name", default=None, help="bundle name (default: the folder's name)")
    parser.add_argument("--int8", action="store_true", help="also write a quantized encoder")
    parser.add_argument(
        "--metrics", type=Path, default=None, help="an `evaluate --out` JSON file to record"
    )
    parser.add_argument(
        "--checkpoint-facts",
        action="store_true",
        help="keep the ranker checkpoint's item facts instead of refitting them on all the data",
    )


def main(args: argparse.Namespace) -> int:
    manifest = export_bundle(
        args.finetuned,
        args.ranker,
        args.catalog,
        args.out,
        name=args.name,
        int8=args.int8,
        metrics_file=args.metrics,
        checkpoint_facts=args.checkpoint_facts,
    )
    parity = manifest["metrics"]["parity"]
    fp32 = parity["encoder_fp32"]
    print(
        f"{args.out}: encoder parity max |diff| "
        f"{max(fp32['max_abs_diff'].values()):.2e}, top-10 identical: {fp32['top10_identical']}; "
        f"ranker max |diff| {parity['ranker_fp32']['max_abs_diff']:.2e}"
    )
    if "encoder_int8" in parity:
        print(f"int8 encoder top-10 overlap: {parity['encoder_int8']['top10_overlap_mean']:.3f}")
    total = sum(f["bytes"] for f in manifest["files"].values())
    print(f"bundle size {total / 1e6:.1f} MB, files: {', '.join(manifest['files'])}")
    return 0
