"""The exported encoder without its vocabulary-wide entry head, and that head for a few items.

The encoder answers every list with a predicted score and a drop probability for *every* item: its
entry head runs `gelu(item_part + state · W_user) · W_out + b_out` over the whole vocabulary, about
two thirds of a run at 7k items. Leave-one-out attribution (`BundleModel.leave_one_out`) runs the
encoder on many variants of one list and needs those two numbers for a handful of items only, so it
runs the encoder's *trunk* (the transformer up to the watch logits and the user vector, about a
third of the work) and evaluates the head for just those items with numpy.

Both come from the bundle's own `encoder.onnx`, read here without the `onnx` package (serving does
not install it): a minimal reader of the protobuf wire format keeps the nodes the trunk's outputs
need, and the head's four weights are found by the graph's shape (the MatMul on `user_vector`, the
[1, items, h] table added to it, the [h, 1 + statuses] output layer after the GELU). Anything
unexpected (an int8 graph, control flow, weights stored outside the file) gives no trunk, and the
caller uses the whole encoder. `BundleModel` also checks the numpy head against the encoder's own
outputs before trusting it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from inference.animelist import STATUS_CODES, Status

log = logging.getLogger(__name__)

# How training's EncoderGraph turns the head's outputs into answers (training.export): the score
# is an offset from 7 clipped to 1..10, the drop probability the softmax's "dropped" status.
SCORE_CENTER = 7.0
SCORE_RANGE = (1.0, 10.0)
DROPPED = STATUS_CODES[Status.DROPPED]
TRUNK_OUTPUTS = ("watch_logits", "user_vector")

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_FLOAT = 1  # TensorProto.FLOAT
# Field numbers of onnx.proto3 (stable since IR version 3).
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_VALUE_INFO = 1, 5, 11, 12, 13
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE = 1, 2, 4
_TENSOR_DIMS, _TENSOR_TYPE, _TENSOR_FLOATS, _TENSOR_NAME, _TENSOR_RAW = 1, 2, 4, 8, 9
_TENSOR_EXTERNAL = 13
_VALUE_INFO_NAME = 1
_CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})


class GraphFormatError(ValueError):
    """The model is not a graph this module can cut (the caller falls back to the whole model)."""


@dataclass(frozen=True, slots=True)
class _Field:
    number: int
    wire: int
    value: int  # varints and fixed-size numbers (0 for length-delimited fields)
    data: memoryview  # length-delimited fields' payload (empty for numbers); a view, no copy
    raw: memoryview  # the field as it was encoded, key included, to write back unchanged


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise GraphFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise GraphFormatError("varint longer than 64 bits")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(data: bytes | memoryview) -> list[_Field]:
    buf = memoryview(data)
    out: list[_Field] = []
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value, payload = 0, buf[0:0]
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _FIXED64:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == _FIXED32:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        elif wire == _BYTES:
            size, pos = _varint(buf, pos)
            payload, pos = buf[pos : pos + size], pos + size
        else:
            raise GraphFormatError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise GraphFormatError("truncated field")
        out.append(_Field(number, wire, value, payload, buf[start:pos]))
    return out


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _BYTES) + _encode_varint(len(payload)) + payload


def _strings(fields: Iterable[_Field], number: int) -> list[str]:
    return [bytes(f.data).decode() for f in fields if f.number == number and f.wire == _BYTES]


def _one_string(fields: Iterable[_Field], number: int) -> str:
    found = _strings(fields, number)
    return found[0] if found else ""


@dataclass(frozen=True, slots=True)
class _Node:
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


class OnnxGraph:
    """An ONNX model's bytes, parsed just enough to cut it and read its float initializers."""

    def __init__(self, model: bytes) -> None:
        self._model = _fields(model)
        graphs = [f for f in self._model if f.number == _MODEL_GRAPH and f.wire == _BYTES]
        if len(graphs) != 1:
            raise GraphFormatError("the model has no graph")
        self._graph = _fields(graphs[0].data)
        self.nodes: list[_Node] = []
        self._node_fields: list[_Field] = []
        self._initializers: dict[str, list[_Field]] = {}
        for field in self._graph:
            if field.number == _GRAPH_NODE:
                parts = _fields(field.data)
                self.nodes.append(
                    _Node(
                        _one_string(parts, _NODE_OP_TYPE),
                        tuple(_strings(parts, _NODE_INPUT)),
                        tuple(_strings(parts, _NODE_OUTPUT)),
                    )
                )
                self._node_fields.append(field)
            elif field.number == _GRAPH_INITIALIZER:
                parts = _fields(field.data)
                self._initializers[_one_string(parts, _TENSOR_NAME)] = parts
        self.outputs = [
            _one_string(_fields(f.data), _VALUE_INFO_NAME)
            for f in self._graph
            if f.number == _GRAPH_OUTPUT
        ]

    def initializer_names(self) -> list[str]:
        return list(self._initializers)

    def shape(self, name: str) -> tuple[int, ...] | None:
        """An initializer's dimensions (None when `name` is not an initializer)."""
        parts = self._initializers.get(name)
        if parts is None:
            return None
        dims: list[int] = []
        for f in parts:
            if f.number != _TENSOR_DIMS:
                continue
            if f.wire == _VARINT:
                dims.append(f.value)
            else:  # packed
                buf, pos = f.data, 0
                while pos < len(buf):
                    dim, pos = _varint(buf, pos)
                    dims.append(dim)
        return tuple(dims)

    def item_width(self, name: str) -> int:
        shape = self.shape(name)
        if shape is None or len(shape) != 3:
            raise GraphFormatError(f"{name!r} is not a [1, items, h] table")
        return shape[2]

    def array(self, name: str) -> np.ndarray:
        """A float32 initializer as an array of its shape."""
        parts = self._initializers.get(name)
        shape = self.shape(name)
        if parts is None or shape is None:
            raise GraphFormatError(f"no initializer {name!r}")
        kinds = [f.value for f in parts if f.number == _TENSOR_TYPE]
        if kinds != [_FLOAT]:
            raise GraphFormatError(f"initializer {name!r} is not float32")
        if any(f.number == _TENSOR_EXTERNAL for f in parts):
            raise GraphFormatError(f"initializer {name!r} is stored outside the model file")
        raw = [f.data for f in parts if f.number == _TENSOR_RAW]
        packed = [f.data for f in parts if f.number == _TENSOR_FLOATS and f.wire == _BYTES]
        data = bytes(raw[0]) if raw else b"".join(packed)
        values = np.frombuffer(data, dtype="<f4")
        if values.size != int(np.prod(shape)):
            raise GraphFormatError(f"initializer {name!r} holds {values.size} values, not {shape}")
        return values.reshape(shape).astype(np.float32)

    def consumers(self, value: str) -> list[_Node]:
        return [node for node in self.nodes if value in node.inputs]

    def pruned(self, outputs: Sequence[str]) -> bytes:
        """The model with only `outputs`: every node and initializer they do not need is left out
        (onnxruntime runs every node of a graph, whatever outputs a run asks for)."""
        missing = set(outputs) - set(self.outputs)
        if missing:
            raise GraphFormatError(f"the model has no output(s) {sorted(missing)}")
        needed = set(outputs)
        keep = [False] * len(self.nodes)
        # ONNX keeps nodes in topological order: one backward pass finds every producer needed.
        for i in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[i]
            if needed.intersection(node.outputs):
                if node.op_type in _CONTROL_FLOW:
                    raise GraphFormatError(f"the graph has control flow ({node.op_type})")
                keep[i] = True
                needed.update(node.inputs)
        kept_nodes = {id(f) for f, k in zip(self._node_fields, keep, strict=True) if k}
        graph = bytearray()
        for field in self._graph:
            number = field.number
            if number == _GRAPH_NODE and id(field) not in kept_nodes:
                continue
            if number in (_GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_VALUE_INFO):
                parts = _fields(field.data)
                name = _one_string(
                    parts, _TENSOR_NAME if number == _GRAPH_INITIALIZER else _VALUE_INFO_NAME
                )
                if number == _GRAPH_OUTPUT and name not in outputs:
                    continue
                # Graph inputs stay (callers feed them all) unless they name a dropped weight.
                if number == _GRAPH_INPUT and name not in self._initializers:
                    graph += field.raw
                    continue
                if name not in needed:
                    continue
            graph += field.raw
        model = bytearray()
        for field in self._model:
            model += (
                _bytes_field(_MODEL_GRAPH, bytes(graph))
                if field.number == _MODEL_GRAPH
                else field.raw
            )
        return bytes(model)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to 1.2e-7 (Numerical Recipes' erfc Chebyshev fit); numpy has none and scipy is not a
    serving dependency."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (
        -z * z
        - 1.26551223
        + t
        * (
            1.00002368
            + t
            * (
                0.37409196
                + t
                * (
                    0.09678418
                    + t
                    * (
                        -0.18628806
                        + t
                        * (
                            0.27886807
                            + t
                            * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))
                        )
                    )
                )
            )
        )
    )
    erfc = t * np.exp(poly)
    return np.where(x >= 0, 1.0 - erfc, erfc - 1.0)


@dataclass(frozen=True, slots=True)
class EntryHead:
    """The encoder's entry head for chosen items: predicted score and drop probability."""

    item_part: np.ndarray  # float64 [n_items, h]: the item half of the first layer, bias included
    user_weight: np.ndarray  # float64 [d, h]
    out_weight: np.ndarray  # float64 [h, 1 + statuses]
    out_bias: np.ndarray  # float64 [1 + statuses]

    def __call__(self, state: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(predicted scores, drop probabilities) of `items` for one user vector `state`."""
        items = np.asarray(items, dtype=np.int64)
        return self.pairs(np.asarray(state)[None, :], np.zeros(len(items), np.int64), items)

    def pairs(
        self, states: np.ndarray, rows: np.ndarray, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The same for item `items[j]` and user vector `states[rows[j]]`, for every j."""
        users = np.asarray(states, dtype=np.float64) @ self.user_weight
        x = self.item_part[np.asarray(items, dtype=np.int64)] + users[np.asarray(rows)]
        hidden = 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))
        out = hidden @ self.out_weight + self.out_bias
        scores = np.clip(out[:, 0] + SCORE_CENTER, *SCORE_RANGE)
        logits = out[:, 1:]
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return scores, probs[:, DROPPED]

    @classmethod
    def find(cls, graph: OnnxGraph, n_items: int) -> EntryHead:
        """The head's weights, found by the graph's shape (see the module doc)."""
        tables = [
            name
            for name in graph.initializer_names()
            if (shape := graph.shape(name)) is not None
            and len(shape) == 3
            and shape[:2] == (1, n_items)
        ]
        if len(tables) != 1:
            raise GraphFormatError(
                f"expected one [1, {n_items}, h] item table, found {len(tables)}"
            )
        (table,) = tables
        hidden = graph.item_width(table)
        user = [
            node.inputs[1]
            for node in graph.consumers("user_vector")
            if node.op_type == "MatMul"
            and len(node.inputs) == 2
            and (shape := graph.shape(node.inputs[1])) is not None
            and shape[1] == hidden
            and shape[1] != n_items
        ]
        if len(user) != 1:
            raise GraphFormatError(f"expected one [d, {hidden}] MatMul on user_vector")
        adds = [node for node in graph.consumers(table) if node.op_type == "Add"]
        if len(adds) != 1:
            raise GraphFormatError("the item table is not added to the user half")
        out_weight, out_bias = _first_dense_after(graph, adds[0].outputs[0], hidden)
        return cls(
            item_part=graph.array(table)[0].astype(np.float64),
            user_weight=graph.array(user[0]).astype(np.float64),
            out_weight=graph.array(out_weight).astype(np.float64),
            out_bias=graph.array(out_bias).astype(np.float64),
        )


def _first_dense_after(graph: OnnxGraph, value: str, hidden: int) -> tuple[str, str]:
    """(weight, bias) of the first MatMul + Add on a float weight [hidden, k] downstream of
    `value` (the activation's few nodes lie between)."""
    frontier, seen = [value], {value}
    for _ in range(16):  # the GELU is five nodes; more than this is not the graph we know
        nxt: list[str] = []
        for name in frontier:
            for node in graph.consumers(name):
                if node.op_type == "MatMul" and len(node.inputs) == 2:
                    shape = graph.shape(node.inputs[1])
                    if shape is None or len(shape) != 2 or shape[0] != hidden:
                        raise GraphFormatError("the layer after the activation is not [h, k]")
                    for add in graph.consumers(node.outputs[0]):
                        biases = [i for i in add.inputs if graph.shape(i) == (shape[1],)]
                        if add.op_type == "Add" and len(biases) == 1:
                            return node.inputs[1], biases[0]
                    raise GraphFormatError("the output layer has no bias")
                for out in node.outputs:
                    if out not in seen:
                        seen.add(out)
                        nxt.append(out)
        frontier = nxt
    raise GraphFormatError("no output layer after the item table")
