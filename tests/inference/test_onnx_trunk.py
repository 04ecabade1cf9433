"""The encoder cut to its trunk, and its entry head in numpy: the same answers as the whole encoder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.bundle import load_bundle
from inference.bundle_model import ENCODER_OUTPUTS, BundleModel
from inference.encoding import Entries
from inference.onnx_trunk import TRUNK_OUTPUTS, EntryHead, GraphFormatError, OnnxGraph, _erf


def _inputs(model: BundleModel, rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    lists = []
    for _ in range(rows):
        n = int(rng.integers(1, min(model.n_items, 3 * model.max_len)))
        lists.append(
            Entries(
                items=rng.choice(model.n_items, size=n, replace=False).astype(np.int32),
                scores=rng.integers(0, 11, n).astype(np.int8),
                statuses=rng.integers(0, 6, n).astype(np.int8),
                progress=rng.integers(0, 30, n).astype(np.int16),
                times=np.full(n, -1, dtype=np.int64),
            )
        )
    return model.encode(lists, None).as_dict()


@pytest.mark.parametrize("which", ["tiny", "default"])
def test_the_trunk_and_the_numpy_head_answer_as_the_whole_encoder(
    request: pytest.FixtureRequest, which: str
) -> None:
    path = request.getfixturevalue("tiny_bundle" if which == "tiny" else "default_bundle")
    bundle = load_bundle(path)
    model = BundleModel(bundle, "cpu")
    graph = OnnxGraph(bundle.encoder_path.read_bytes())
    trunk_bytes = graph.pruned(TRUNK_OUTPUTS)
    trunk = OnnxGraph(trunk_bytes)
    # Nothing of the vocabulary-wide head is left, and onnxruntime runs the cut model.
    assert trunk.outputs == list(TRUNK_OUTPUTS)
    assert len(trunk.nodes) < len(graph.nodes)
    assert "Erf" not in {node.op_type for node in trunk.nodes[-5:]}
    session = ort.InferenceSession(trunk_bytes, providers=["CPUExecutionProvider"])
    head = EntryHead.find(graph, model.n_items)
    inputs = _inputs(model, np.random.default_rng(0), 4)
    logits, scores, drops, users = model.encoder.run(list(ENCODER_OUTPUTS), inputs)
    cut_logits, cut_users = session.run(list(TRUNK_OUTPUTS), inputs)
    np.testing.assert_array_equal(cut_logits, logits)
    np.testing.assert_array_equal(cut_users, users)
    some = np.random.default_rng(1).choice(
        model.n_items, size=min(50, model.n_items), replace=False
    )
    for row in range(len(users)):
        head_scores, head_drops = head(users[row], some)
        np.testing.assert_allclose(head_scores, scores[row, some], atol=1e-5, rtol=0)
        np.testing.assert_allclose(head_drops, drops[row, some], atol=1e-6, rtol=0)
    # The model loaded through the bundle uses the cut.
    assert model.trunk is not None and model.head is not None


def test_an_int8_encoder_is_not_cut_and_leave_one_out_uses_the_whole_one(
    tiny_bundle: Path,
) -> None:
    bundle = load_bundle(tiny_bundle)
    with pytest.raises(GraphFormatError):
        EntryHead.find(OnnxGraph(bundle.file("encoder.int8.onnx").read_bytes()), 24)
    model = BundleModel(bundle, "cpu", precision="int8")
    assert model.trunk is None and model.head is None


def test_not_a_model_is_a_format_error() -> None:
    with pytest.raises(GraphFormatError, match="no graph"):
        OnnxGraph(b"")
    with pytest.raises(GraphFormatError):
        OnnxGraph(b"\x3a\xff\xff\xff")  # field 7 (graph) whose length runs past the end


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_are_refused_as_a_value_error(data: bytes) -> None:
    try:
        graph = OnnxGraph(data)
        for name in graph.initializer_names():
            graph.shape(name)
    except ValueError:  # GraphFormatError, or text that is not UTF-8
        pass


def test_erf_is_close_to_the_real_one() -> None:
    x = np.linspace(-6, 6, 2001)
    worst = max(abs(float(v) - math.erf(float(t))) for t, v in zip(x, _erf(x), strict=True))
    assert worst < 2e-7
