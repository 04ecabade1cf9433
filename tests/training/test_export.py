"""The ONNX export: parity gate, int8 report, bundle contents and refusal of altered bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.bundle import BundleError, load_bundle
from inference.engine import Engine
from training import export


def test_the_bundle_records_passing_parity_and_the_int8_overlap(tiny_bundle: Path) -> None:
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    parity = manifest["metrics"]["parity"]
    fp32 = parity["encoder_fp32"]
    assert fp32["passed"] and fp32["top10_identical"]
    assert max(fp32["max_abs_diff"].values()) <= 1e-4
    assert parity["ranker_fp32"]["passed"]
    int8 = parity["encoder_int8"]
    assert 0.0 <= int8["top10_overlap_min"] <= int8["top10_overlap_mean"] <= 1.0
    files = manifest["files"]
    assert {"encoder.onnx", "ranker.onnx", "catalog.json.gz", "item_facts.npz"} <= set(files)
    assert "encoder.int8.onnx" in files
    enc = manifest["encoding"]
    assert enc["has_times"] is False and enc["append_query"] is True
    assert enc["progress_from_catalog_episodes"] is True


def test_onnx_encoder_matches_pytorch_on_new_shapes(tiny_bundle: Path) -> None:
    """Dynamic batch and sequence length: shapes the export never saw, against PyTorch."""
    model, _, _, _ = export.load_models(
        tiny_bundle.parent / "ft" / "ckpt.pt", tiny_bundle.parent / "rk" / "ckpt.pt"
    )
    graph = export.EncoderGraph(model).eval()
    session = export._session(tiny_bundle / "encoder.onnx")
    inputs = export.random_inputs(
        np.random.default_rng(7), 5, 11, model.cfg.n_items, model.cfg.max_len
    )
    expected = export._torch_outputs(graph, inputs)
    got = session.run(list(export.ENCODER_OUTPUTS), inputs)
    assert got[0].shape == (5, model.cfg.n_items) and got[3].shape == (5, model.cfg.d_model)
    for e, g in zip(expected, got, strict=True):
        assert np.abs(e - g).max() <= 1e-4


def test_a_failed_parity_check_writes_no_bundle(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_export = export.export_encoder

    def export_then_drift(graph: export.EncoderGraph, path: Path, n: int, max_len: int) -> None:
        real_export(graph, path, n, max_len)
        with torch.no_grad():  # the PyTorch model moves on after the file was written
            graph.model.item_bias += torch.linspace(0.0, 1.0, n)

    monkeypatch.setattr(export, "export_encoder", export_then_drift)
    root = tiny_bundle.parent
    out = tmp_path / "drifted"
    with pytest.raises(export.ExportError, match="parity"):
        export.export_bundle(
            root / "ft" / "ckpt.pt", root / "rk" / "ckpt.pt", root / "catalog.json.gz", out
        )
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the work folder is gone too


def test_the_export_command_reports_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.__main__ import main

    code = main(
        [
            "export",
            "--finetuned",
            str(tmp_path / "missing.pt"),
            "--ranker",
            str(tmp_path / "missing-ranker.pt"),
            "--catalog",
            str(tmp_path / "catalog.json.gz"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def _copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(bundle, target)
    return target


def test_a_tampered_model_file_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = _copy(tiny_bundle, tmp_path)
    data = bytearray((bundle / "ranker.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "ranker.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"ranker\.onnx does not match its sha256"):
        Engine.from_bundle(bundle, providers="cpu")


def test_tampered_item_facts_are_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = _copy(tiny_bundle, tmp_path)
    with open(bundle / "item_facts.npz", "ab") as f:
        f.write(b"x")
    with pytest.raises(BundleError, match=r"item_facts\.npz is \d+ bytes"):
        load_bundle(bundle)


def test_another_format_version_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = _copy(tiny_bundle, tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="version 99 is not supported"):
        Engine.from_bundle(bundle, providers="cpu")


def test_item_facts_are_refitted_on_every_interaction(tiny_bundle: Path, tmp_path: Path) -> None:
    from training.dataset import Dataset
    from training.train import load_checkpoint

    root = tiny_bundle.parent
    data = Dataset(root / "planted")
    items = np.asarray(data.items, dtype=np.int64)
    scores = np.asarray(data.scores, dtype=np.float64)
    scored = scores > 0
    count = np.bincount(items[scored], minlength=data.n_items)
    mean = np.bincount(items[scored], scores[scored], minlength=data.n_items) / np.maximum(count, 1)
    with np.load(tiny_bundle / "item_facts.npz") as served:
        np.testing.assert_allclose(served["mean_score"], mean, rtol=1e-6)
        np.testing.assert_array_equal(served["score_count"], count)
    trained = load_checkpoint(root / "rk" / "ckpt.pt")["facts"]
    assert trained["score_count"].sum() < count.sum()  # the checkpoint saw the training part only
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert manifest["training_data"]["item_facts_from"] == "every interaction of the dataset"

    # Asked to keep the checkpoint's facts, it does; without the dataset, a clear error.
    rk = root / "rk" / "ckpt.pt"
    out = tmp_path / "kept"
    export.export_bundle(
        root / "ft" / "ckpt.pt", rk, root / "catalog.json.gz", out, checkpoint_facts=True
    )
    with np.load(out / "item_facts.npz") as kept:
        np.testing.assert_array_equal(kept["score_count"], trained["score_count"])
    with pytest.raises(export.ExportError, match="--checkpoint-facts"):
        export.serving_facts(load_checkpoint(rk), tmp_path / "gone", has_times=False)
