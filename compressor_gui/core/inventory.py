"""The layer inventory: every weight-bearing node with its true cost.

Weights are found wherever real exports keep them: initializers, `Constant` nodes, `If`/`Loop`
subgraphs, behind `DequantizeLinear`/`Cast`/`Transpose` chains, and already-quantized
tensors. Every stored tensor belongs to exactly one row (leftovers are rows of kind "other"),
so the totals equal the file's real parameter count. MACs come from ONNX shape inference on a
weight-free skeleton of the graph (shapes only), so a 500 MB model costs no extra copy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from compressor_gui.core.errors import CompressorError
from compressor_gui.core.graph import (
    constant_value,
    has_subgraphs,
    iter_named_tensors,
    named_subgraphs,
    real_inputs,
)
from compressor_gui.core.ops import layer_facts
from compressor_gui.core.shapes import declared_input_shapes, value_shapes


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, shape (int, symbolic name, or None) and dtype."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str


@dataclass(frozen=True)
class LayerInfo:
    """One weight-bearing node (or one leftover tensor, kind "other") and what it costs."""

    name: str
    op_type: str
    # conv | depthwise | group_conv | conv_transpose | linear | rnn | embedding | norm | other
    kind: str
    weight_names: tuple[str, ...]
    weight_shape: tuple[int, ...]
    dtype: str
    params: int
    size_bytes: int
    zeros: int
    macs: int | None  # None when shapes are unknown ("n/a")
    weight_min: float
    weight_max: float
    weight_std: float
    graph: str = ""  # "" for the main graph, else the subgraph path, e.g. "If_0/then_branch"
    notes: tuple[str, ...] = ()
    # params of owned weights besides the main one that quantization codes too (an RNN's
    # recurrence weights R), so the size prediction shrinks them with the main weight
    coded_params: int = 0

    @property
    def sparsity(self) -> float:
        return self.zeros / self.params if self.params else 0.0


@dataclass(frozen=True)
class ModelInventory:
    """All layers of a model plus totals, IO and the assumptions made to count MACs."""

    layers: tuple[LayerInfo, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    assumptions: tuple[str, ...] = ()
    opsets: Mapping[str, int] = field(default_factory=dict)
    producer: str = ""

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def total_bytes(self) -> int:
        return sum(layer.size_bytes for layer in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs or 0 for layer in self.layers)

    @property
    def total_zeros(self) -> int:
        return sum(layer.zeros for layer in self.layers)

    @property
    def macs_unknown(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers if layer.macs is None)

    def layer(self, name: str) -> LayerInfo:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (used by `inspect --json` and reports)."""
        return {
            "producer": self.producer,
            "opsets": dict(self.opsets),
            "inputs": [asdict(t) for t in self.inputs],
            "outputs": [asdict(t) for t in self.outputs],
            "assumptions": list(self.assumptions),
            "totals": {
                "params": self.total_params,
                "size_bytes": self.total_bytes,
                "macs": self.total_macs,
                "zeros": self.total_zeros,
                "macs_unknown_layers": list(self.macs_unknown),
            },
            "layers": [{**asdict(layer), "sparsity": layer.sparsity} for layer in self.layers],
        }


def build_inventory(
    model: onnx.ModelProto, *, input_shapes: Mapping[str, Iterable[int]] | None = None
) -> ModelInventory:
    """List every weight-bearing layer of an ONNX model. Dynamic input dims are taken from
    `input_shapes` when given, else assumed 1; each assumption is recorded."""
    assumptions: list[str] = []
    shapes = _infer_shapes(model, dict(input_shapes or {}), assumptions)
    collector = _Collector(shapes)
    collector.visit(model.graph, path="", outer_constants={})
    return ModelInventory(
        layers=tuple(collector.layers),
        inputs=tuple(_spec(v) for v in real_inputs(model.graph)),
        outputs=tuple(_spec(v) for v in model.graph.output),
        assumptions=tuple(assumptions + collector.assumptions),
        opsets={o.domain or "ai.onnx": o.version for o in model.opset_import},
        producer=f"{model.producer_name} {model.producer_version}".strip(),
    )


def build_tensor_inventory(
    tensors: Mapping[str, np.ndarray], module_types: Mapping[str, str] | None = None
) -> ModelInventory:
    """Inventory of weights without a graph (a state_dict, a TorchScript module with unknown
    input shapes): tensors grouped by module prefix, op type from the module type or shape."""
    module_types = module_types or {}
    groups: dict[str, list[str]] = {}
    for name in tensors:
        groups.setdefault(name.rpartition(".")[0] or name, []).append(name)
    layers = []
    for prefix, names in groups.items():
        arrays = [tensors[n] for n in names]
        primary = max(arrays, key=lambda a: a.ndim * 10**12 + a.size)
        op_type = module_types.get(prefix) or _op_from_shape(primary.shape)
        layers.append(
            _make_layer(
                prefix, op_type, _kind_from_module(op_type, primary), names, arrays, None, "", ()
            )
        )
    return ModelInventory(
        layers=tuple(layers),
        inputs=(),
        outputs=(),
        assumptions=("no graph: MACs are not available (weights only)",),
    )


def weight_array(model: onnx.ModelProto, tensor_name: str) -> np.ndarray:
    """The values of one stored tensor (initializer or Constant, any subgraph) by name."""
    for name, tensor in iter_named_tensors(model.graph):
        if name == tensor_name:
            return numpy_helper.to_array(tensor)
    raise KeyError(tensor_name)


# --- shapes ----------------------------------------------------------------------------------


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor_type = value.type.tensor_type
    dims: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(dim.dim_value)
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    dtype = (
        onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
        if (tensor_type.elem_type)
        else "unknown"
    )
    return TensorSpec(value.name, tuple(dims), dtype)


def _infer_shapes(
    model: onnx.ModelProto, overrides: dict[str, Iterable[int]], assumptions: list[str]
) -> dict[str, tuple[int, ...]]:
    """Static shapes of every value, dynamic input dims filled by the one input-shape policy
    (each choice recorded); values whose shape stays unknown are left out."""
    inputs, assumed = declared_input_shapes(model, overrides)
    assumptions.extend(str(dim) for dim in assumed)
    try:
        shapes = value_shapes(model, inputs, data_prop=True)
    except CompressorError as exc:
        assumptions.append(f"{exc}: MACs are n/a where shapes are unknown")
        return dict(inputs)
    return {name: shape for name, shape in shapes.items() if all(isinstance(d, int) for d in shape)}


# --- collection ------------------------------------------------------------------------------


class _Collector:
    """Walks graphs, assigns each stored tensor to the first layer that consumes it."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.shapes = shapes
        self.layers: list[LayerInfo] = []
        self.assumptions: list[str] = []
        # id() -> object of TensorProtos already in a row; holding the object keeps its id from
        # being reused by a later protobuf wrapper.
        self._claimed: dict[int, object] = {}
        self._names: set[str] = set()
        self._constants: dict[int, tuple[onnx.NodeProto, onnx.TensorProto | None]] = {}

    def _constant(self, node: onnx.NodeProto) -> onnx.TensorProto | None:
        """A Constant node's tensor, built once so its identity is stable across passes."""
        if id(node) not in self._constants:
            self._constants[id(node)] = (node, constant_value(node))
        return self._constants[id(node)][1]

    def visit(self, graph: onnx.GraphProto, path: str, outer_constants: dict) -> None:
        constants = dict(outer_constants)
        producers: dict[str, onnx.NodeProto] = {}
        for tensor in graph.initializer:
            constants[tensor.name] = tensor
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                value = self._constant(node)
                if value is not None:
                    constants[node.output[0]] = value
            for output in node.output:
                producers[output] = node

        memo: dict[str, list[tuple[str, onnx.TensorProto]]] = {}

        def weights_of(name: str) -> list[tuple[str, onnx.TensorProto]]:
            """Stored tensors behind a value computed from stored tensors only (Dequantize,
            Cast, Transpose, or the Slice/Concat gate shuffles of LSTM exports); [] if any
            input is an activation."""
            if name in constants:
                return [(name, constants[name])]
            if name in memo:
                return memo[name]
            memo[name] = []  # guards against cycles while this value is being traced
            node = producers.get(name)
            if node is None or has_subgraphs(node) or node.op_type == "Shape":
                return []
            traced = [weights_of(i) for i in node.input if i]
            if traced and all(traced):
                memo[name] = [w for found in traced for w in found]
            return memo[name]

        for index, node in enumerate(graph.node):
            if all(weights_of(o) for o in node.output if o):
                continue  # part of a constant subexpression, claimed by its consumer
            role = layer_facts(node)
            if role is not None or _is_unknown_op(node):
                self._add_node(node, index, path, weights_of, role)
        for node in graph.node:
            for attr_name, sub in named_subgraphs(node):
                name = node.name or node.op_type
                self.visit(sub, f"{path}/{name}/{attr_name}".lstrip("/"), constants)
        self._add_leftovers(graph, path, producers)

    def _unique(self, name: str) -> str:
        candidate, suffix = name, 1
        while candidate in self._names:
            suffix += 1
            candidate = f"{name}#{suffix}"
        self._names.add(candidate)
        return candidate

    def _add_node(self, node, index, path, weights_of, role) -> None:
        traced: dict[int, tuple[str, onnx.TensorProto]] = {}
        primary_input = role.main_input(node) if role else None
        ordered = [i for i in node.input if i]
        if primary_input is not None and primary_input in ordered:
            ordered.remove(primary_input)
            ordered.insert(0, primary_input)
        for position, input_name in enumerate(ordered):
            found = weights_of(input_name)
            if position == 0:  # the main weight first, so it defines shape and stats
                found = sorted(found, key=lambda w: -math.prod(w[1].dims))
            for name, tensor in found:
                traced.setdefault(id(tensor), (name, tensor))  # gate slices reuse one tensor
        if not traced:
            return  # e.g. a MatMul of two activations: no weights, not a layer
        primary = numpy_helper.to_array(next(iter(traced.values()))[1])
        if role is not None and not role.accepts(primary):
            return  # e.g. Gather from a shape constant: its tensor stays an "other" row
        owned = [(n, t) for key, (n, t) in traced.items() if key not in self._claimed]
        notes = [
            f"shares {n} with an earlier layer"
            for key, (n, _) in traced.items()
            if key in self._claimed
        ]
        self._claimed.update((key, tensor) for key, (_, tensor) in traced.items())
        if role is None:
            notes.append(
                f"op {node.domain + '.' if node.domain else ''}{node.op_type} is not "
                "known to the inventory: weights counted, MACs n/a"
            )
        name = self._unique(node.name or f"{node.op_type}_{index}")
        layer = _make_layer(
            name,
            node.op_type,
            role.kind(node, primary.shape) if role else "other",
            [n for n, _ in owned],
            [numpy_helper.to_array(t) for _, t in owned],
            role.macs_or_none(node, self.shapes, primary.shape) if role else None,
            path,
            tuple(notes),
            primary=primary,
        )
        coded = _coded_params(node, role, owned, weights_of)
        self.layers.append(dataclasses.replace(layer, coded_params=coded))

    def _add_leftovers(self, graph, path, producers) -> None:
        consumers: dict[str, str] = {}
        for node in graph.node:
            for input_name in node.input:
                consumers.setdefault(input_name, node.op_type)
        own: list[tuple[str, onnx.TensorProto]] = [(t.name, t) for t in graph.initializer]
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                value = self._constant(node)
                if value is not None:
                    own.append((node.output[0], value))
        for name, tensor in own:
            if id(tensor) in self._claimed:
                continue
            self._claimed[id(tensor)] = tensor
            array = numpy_helper.to_array(tensor)
            source = "Constant" if name in producers else "initializer"
            self.layers.append(
                _make_layer(
                    self._unique(name),
                    consumers.get(name, source),
                    "other",
                    [name],
                    [array],
                    0,
                    path,
                    (),
                )
            )


def _coded_params(node, role, owned, weights_of) -> int:
    """Params of the owned tensors behind the node's other coded inputs (role.axes), apart
    from those behind its main weight (an LSTM export may slice W and R from one tensor)."""
    if role is None:
        return 0
    main = role.main_input(node)
    behind_main = {id(t) for _, t in weights_of(main)} if main else set()
    coded: dict[int, int] = {}
    for position in role.axes:
        if position == role.weight_input or position >= len(node.input) or not node.input[position]:
            continue
        for _, tensor in weights_of(node.input[position]):
            coded[id(tensor)] = math.prod(tensor.dims)
    owned_ids = {id(t) for _, t in owned}
    return sum(n for key, n in coded.items() if key in owned_ids and key not in behind_main)


def _make_layer(name, op_type, kind, names, arrays, macs, path, notes, primary=None) -> LayerInfo:
    """A row: params/bytes/zeros count only the tensors it owns; shape and stats describe its
    main weight even when that weight is shared with an earlier row."""
    primary = arrays[0] if primary is None else primary
    params = int(sum(a.size for a in arrays))
    zeros = int(sum(a.size - np.count_nonzero(a) for a in arrays))
    if primary.size and primary.dtype.kind in "fiub":
        stats = primary.astype(np.float32, copy=False) if primary.dtype.kind == "f" else primary
        low, high, std = float(stats.min()), float(stats.max()), float(stats.std())
    else:
        low = high = std = 0.0
    return LayerInfo(
        name=name,
        op_type=op_type,
        kind=kind,
        weight_names=tuple(names),
        weight_shape=tuple(int(d) for d in primary.shape),
        dtype=primary.dtype.name,
        params=params,
        size_bytes=int(sum(a.nbytes for a in arrays)),
        zeros=zeros,
        macs=macs,
        weight_min=low,
        weight_max=high,
        weight_std=std,
        graph=path,
        notes=tuple(notes),
    )


def _is_unknown_op(node: onnx.NodeProto) -> bool:
    """An op outside the ONNX standard (custom domain or unregistered): its weights get a row
    of their own with MACs n/a rather than being folded into "other"."""
    if node.domain not in ("", "ai.onnx"):
        return True
    return not onnx.defs.has(node.op_type)


def _op_from_shape(shape: tuple[int, ...]) -> str:
    return {4: "Conv", 3: "Conv1d", 2: "Linear"}.get(len(shape), "other")


def _kind_from_module(op_type: str, primary: np.ndarray) -> str:
    lowered = op_type.lower()
    for needle, kind in (
        ("conv", "conv"),
        ("linear", "linear"),
        ("lstm", "rnn"),
        ("gru", "rnn"),
        ("rnn", "rnn"),
        ("embedding", "embedding"),
        ("norm", "norm"),
    ):
        if needle in lowered:
            return kind
    return "other"
