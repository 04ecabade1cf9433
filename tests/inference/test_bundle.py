from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from inference.bundle import (
    CPU,
    CUDA,
    BundleError,
    choose_providers,
    hash_file,
    load_bundle,
    make_session,
    write_manifest,
)
from inference.catalog import Catalog, save_catalog
from inference.errors import AnimerecError, ConfigError
from tests.inference.small_catalogs import item

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _tiny_model(path: Path, offset: float) -> None:
    """y = x + offset, float32 [batch, 2], dynamic batch."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "offset"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("offset", TensorProto.FLOAT, [2], [offset, offset])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def _catalog() -> Catalog:
    return Catalog([item(1, "Cowboy Bebop"), item(5, "Bebop Movie", franchise_id=1)])


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "default"
    folder.mkdir()
    _tiny_model(folder / "encoder.onnx", 1.0)
    _tiny_model(folder / "ranker.onnx", 2.0)
    save_catalog(_catalog(), folder / "catalog.json.gz")
    write_manifest(
        folder,
        name="default",
        encoding={"max_len": 64, "n_items": 2, "item_offset": 2},
        training_data={"users": 3},
        metrics={"NDCG@10": 0.1},
    )
    return folder


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _rewrite_manifest(folder: Path, manifest: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_written_bundle_loads_whole(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.name == "default"
    assert [it.mal_id for it in bundle.catalog] == [1, 5]
    assert bundle.encoding["max_len"] == 64
    assert bundle.encoder_path == bundle_dir / "encoder.onnx"
    manifest = _manifest(bundle_dir)
    assert manifest["format"] == "animerec-bundle" and manifest["format_version"] == 1
    assert manifest["vocabulary"]["size"] == 2
    sha, size = hash_file(bundle_dir / "ranker.onnx")
    assert manifest["files"]["ranker.onnx"] == {"sha256": sha, "bytes": size}
    assert bundle.file("catalog.json.gz").is_file()


def test_changed_byte_is_refused_naming_the_file(bundle_dir: Path) -> None:
    path = bundle_dir / "ranker.onnx"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"ranker\.onnx does not match its sha256.*re-export"):
        load_bundle(bundle_dir)


def test_hashes_are_checked_before_the_catalogue_is_read(bundle_dir: Path) -> None:
    (bundle_dir / "catalog.json.gz").write_bytes(b"not gzip at all")
    with pytest.raises(BundleError, match=r"catalog\.json\.gz is 15 bytes, the manifest says"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(format="something-else"), "not a bundle manifest"),
        (lambda m: m.update(format_version=2), "format version 2 is not supported"),
        (lambda m: m["files"].pop("encoder.onnx"), r"does not list encoder\.onnx"),
        (lambda m: m["files"].update({"../etc": m["files"]["ranker.onnx"]}), "not a plain file"),
        (lambda m: m["files"]["ranker.onnx"].pop("sha256"), "malformed"),
        (lambda m: m["vocabulary"].update(size=3), "do not match the model's vocabulary"),
        (lambda m: m["encoding"].update(n_items=99), "encoder expects 99 items"),
        (lambda m: m.pop("name"), "'name' is missing"),
    ],
)
def test_bad_manifests_are_refused(bundle_dir: Path, change, message: str) -> None:
    manifest = _manifest(bundle_dir)
    change(manifest)
    _rewrite_manifest(bundle_dir, manifest)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_dir)


def test_reordered_catalogue_with_fresh_hash_still_fails_the_vocabulary_check(
    bundle_dir: Path,
) -> None:
    save_catalog(Catalog(list(reversed(_catalog().items))), bundle_dir / "catalog.json.gz")
    manifest = _manifest(bundle_dir)
    sha, size = hash_file(bundle_dir / "catalog.json.gz")
    manifest["files"]["catalog.json.gz"] = {"sha256": sha, "bytes": size}
    _rewrite_manifest(bundle_dir, manifest)
    with pytest.raises(BundleError, match="vocabulary"):
        load_bundle(bundle_dir)


def test_missing_pieces(tmp_path: Path, bundle_dir: Path) -> None:
    with pytest.raises(BundleError, match="not a folder"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        load_bundle(tmp_path)
    (bundle_dir / "manifest.json").write_text("{oops")
    with pytest.raises(BundleError, match="cannot be read"):
        load_bundle(bundle_dir)
    (bundle_dir / "encoder.onnx").unlink()
    with pytest.raises(BundleError, match=r"encoder\.onnx is missing"):
        write_manifest(bundle_dir, name="x", encoding={}, training_data={}, metrics={})
    assert issubclass(BundleError, AnimerecError)


def test_cpu_session_runs_the_model_and_logs_its_provider(
    bundle_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = load_bundle(bundle_dir)
    with caplog.at_level(logging.INFO, logger="inference.bundle"):
        session = make_session(bundle.ranker_path, "cpu")
    assert session.get_providers()[0] == CPU
    assert "ranker.onnx: running on CPUExecutionProvider" in caplog.text
    x = np.array([[0.5, 1.0], [2.0, -1.0], [0.0, 0.0]], dtype=np.float32)
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, x + 2.0)
    auto = make_session(bundle.encoder_path)  # no GPU provider here: "auto" means CPU
    np.testing.assert_allclose(auto.run(None, {"x": x})[0], x + 1.0)


def test_provider_settings() -> None:
    assert choose_providers("auto", [CPU]) == [CPU]
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("CPU", [CUDA, CPU]) == [CPU]
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        choose_providers("cuda", [CPU])
    with pytest.raises(ConfigError, match="TensorrtExecutionProvider"):
        choose_providers(["TensorrtExecutionProvider"], [CPU])
    with pytest.raises(ConfigError, match="unknown providers setting"):
        choose_providers("gpu please", [CPU])


def test_a_broken_model_file_is_a_bundle_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(BundleError, match="cannot load model"):
        make_session(path, "cpu")
