"""One table of facts per ONNX op type: `OPS[op_type] -> OpFacts`.

Every module that needs to know something about an op type reads it here, so adding an op is
one entry: how it runs in torch (training: distillation, quantization-aware fine-tuning),
which stored inputs are weights and how they are laid out (output-channel and reduction
axes), what kind of layer it is and its MAC formula (the inventory), what each compression
can do to it (quantization paths, pruning, sensitivity sweeps), and how channel pruning
follows channels through it (`channels`: the name of a rule in `prune_graph`). Behaviour
(how a graph is rewritten) stays in the modules that do it; the facts they key on live here.

The table stays importable without torch (the desktop bundle ships without it): torch
builders live in `torch_ops` (which sees a node through `graph.NodeView`, never this table)
and are imported on first use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from compressor_gui.core.graph import NodeView, node_attribute

# activations onnxruntime's QDQ quantizer folds into the layer before them
FOLDED_ACTIVATIONS = ("Clip", "Relu")

# Builds a torch.nn.Module whose forward takes the node's inputs (None for absent optional
# ones) and returns its output, or a tuple of outputs.
TorchBuilder = Callable[[NodeView], Any]


def _torch_op(name: str) -> TorchBuilder:
    """The builder `name` of `torch_ops`, imported when first called."""

    def build(view: NodeView) -> Any:
        from compressor_gui.core import torch_ops

        return getattr(torch_ops, name)(view)

    build.__name__ = name
    return build


# --- facts of weight-bearing layers ----------------------------------------------------------

# (node, rank of the weight) -> an axis of that weight
AxisRule = Callable[[onnx.NodeProto, int], int]
# (node, main weight shape) -> conv | depthwise | group_conv | conv_transpose | linear | rnn ...
KindRule = Callable[[onnx.NodeProto, tuple[int, ...]], str]
# (node, known tensor shapes, main weight shape) -> multiply-accumulates of one run
MacsRule = Callable[[onnx.NodeProto, Mapping[str, tuple[int, ...]], tuple[int, ...]], int]


@dataclass(frozen=True)
class LayerFacts:
    """A weight-bearing op: where its weights are, how they are laid out, what it costs and
    what each compression can do to it.

    `weight_input`: position of the main weight (its shape and statistics describe the
    layer). `axes`: for each input position that may hold a stored weight, its
    (output-channel axis, reduction axis or None); scales run per output channel, INT4
    blocks and 2:4 groups along the reduction axis. `min_rank`: a main weight of lower
    rank, or not float, is not this kind of layer (a Gather from a shape constant is no
    embedding)."""

    weight_input: int
    kind: KindRule
    macs: MacsRule
    axes: Mapping[int, tuple[AxisRule, AxisRule | None]] = field(default_factory=dict)
    min_rank: int = 0
    quantized: bool = False  # computes on integer weights already (ConvInteger, QLinear*)
    codes: bool = False  # weights can be stored as codes + scales behind a DequantizeLinear
    static_int8: bool = False  # onnxruntime quantize_static (QDQ) has a kernel
    dynamic_int8: bool = False  # onnxruntime quantize_dynamic has a kernel
    nbits: bool = False  # onnxruntime MatMulNBits (INT4 weight-only with a real kernel)
    prunable: bool = False  # magnitude, 2:4 and channel pruning; sensitivity sweeps

    def accepts(self, weight: np.ndarray) -> bool:
        return weight.ndim >= self.min_rank and (self.min_rank == 0 or weight.dtype.kind == "f")

    def main_input(self, node: onnx.NodeProto) -> str | None:
        return node.input[self.weight_input] if len(node.input) > self.weight_input else None

    def macs_or_none(self, node, shapes, weight_shape) -> int | None:
        """MACs, or None when the shapes they need are unknown."""
        try:
            return self.macs(node, shapes, weight_shape)
        except (KeyError, IndexError, ValueError, ZeroDivisionError, TypeError):
            return None


def _axis(index: int) -> AxisRule:
    return lambda node, ndim: index if index >= 0 else ndim + index


def _gemm_axes() -> tuple[AxisRule, AxisRule]:
    """Gemm's B is (K, N), or (N, K) with transB."""

    def out_axis(node: onnx.NodeProto, ndim: int) -> int:
        return 0 if node_attribute(node, "transB", 0) else 1

    return out_axis, lambda node, ndim: 1 - out_axis(node, ndim)


def _conv_kind(node, weight_shape) -> str:
    group = node_attribute(node, "group", 1)
    if group == 1:
        return "conv"
    out_channels = weight_shape[0] if weight_shape else 0
    one_input = len(weight_shape) > 1 and weight_shape[1] == 1
    return "depthwise" if group == out_channels and one_input else "group_conv"


def _conv_macs(node, shapes, weight_shape) -> int:
    out = shapes[node.output[0]]
    # out: N, M, *spatial; W: M, C/g, *k -> each output element does C/g * prod(k) MACs.
    return int(math.prod(out) * math.prod(weight_shape[1:]))


def _conv_transpose_macs(node, shapes, weight_shape) -> int:
    x = shapes[node.input[0]]
    # W: C, M/g, *k: every input element is scattered to M/g * prod(k) outputs.
    return int(math.prod(x) * math.prod(weight_shape[1:]))


def _contracted_macs(node, shapes, weight_shape) -> int:
    """MatMul/Gemm-like: every output element is a dot product over the contracted dim."""
    out = shapes[node.output[0]]
    a = shapes.get(node.input[0])
    if node.op_type == "Gemm":
        k = a[0] if node_attribute(node, "transA", 0) else a[-1] if a else None
        if k is None:
            b_shape = shapes.get(node.input[1]) or weight_shape
            k = b_shape[1] if node_attribute(node, "transB", 0) else b_shape[0]
    elif node.op_type == "MatMulNBits":
        k = node_attribute(node, "K", 0)
    elif a is not None:
        k = a[-1]
    else:
        k = weight_shape[-2]
    return int(math.prod(out) * k)


def _rnn_macs(gates: int) -> MacsRule:
    def macs(node, shapes, weight_shape) -> int:
        x = shapes[node.input[0]]
        seq, batch = (x[1], x[0]) if node_attribute(node, "layout", 0) else (x[0], x[1])
        directions, gate_rows, input_size = weight_shape
        hidden = gate_rows // gates
        return int(seq * batch * directions * gates * hidden * (input_size + hidden))

    return macs


def _elementwise_macs(node, shapes, weight_shape) -> int:
    return int(math.prod(shapes[node.output[0]]))


def _no_macs(node, shapes, weight_shape) -> int:
    return 0


def _fixed(kind: str) -> KindRule:
    return lambda node, weight_shape: kind


_CONV_AXES = {1: (_axis(0), _axis(1))}
_RNN_AXES = {1: (_axis(1), None), 2: (_axis(1), None)}  # W and R: [dirs, gates * H, in]


def _conv_layer(**capabilities: bool) -> LayerFacts:
    return LayerFacts(1, _conv_kind, _conv_macs, _CONV_AXES, **capabilities)


def _rnn_layer(gates: int, **capabilities: bool) -> LayerFacts:
    return LayerFacts(1, _fixed("rnn"), _rnn_macs(gates), _RNN_AXES, codes=True, **capabilities)


def _norm_layer() -> LayerFacts:
    return LayerFacts(1, _fixed("norm"), _elementwise_macs)


def _integer_layer(weight_input: int, kind: KindRule, macs: MacsRule) -> LayerFacts:
    return LayerFacts(weight_input, kind, macs, quantized=True)


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpFacts:
    """What the project knows about one op type.

    `torch`: how the op runs in torch. `trainable_inputs`: input positions that are weights
    when stored (they become torch Parameters named after their initializers; elementwise
    ops count only operands of more than one value, so an exporter's scalar constants such
    as HardSwish's 3 and 6 stay constants). `layer`: set for weight-bearing ops.
    `channels`: how channel pruning follows channels through the op (a rule of
    `prune_graph`; None: it does not, and channels it touches are never cut)."""

    torch: TorchBuilder | None = None
    trainable_inputs: tuple[int, ...] = ()
    elementwise: bool = False
    layer: LayerFacts | None = None
    channels: str | None = None


def _unary(name: str | None, channels: str | None = "passthrough") -> OpFacts:
    return OpFacts(torch=_torch_op(name) if name else None, channels=channels)


def _binary(name: str | None) -> OpFacts:
    if name is None:
        return OpFacts(channels="elementwise")
    return OpFacts(
        torch=_torch_op(name), trainable_inputs=(0, 1), elementwise=True, channels="elementwise"
    )


OPS: dict[str, OpFacts] = {
    # layers with weights
    "Conv": OpFacts(
        torch=_torch_op("conv"),
        trainable_inputs=(1, 2),
        layer=_conv_layer(codes=True, static_int8=True, prunable=True),
        channels="conv",
    ),
    "ConvTranspose": OpFacts(
        torch=_torch_op("conv_transpose"),
        trainable_inputs=(1, 2),
        layer=LayerFacts(
            1,
            _fixed("conv_transpose"),
            _conv_transpose_macs,
            {1: (_axis(1), _axis(0))},
            codes=True,
            static_int8=True,
            prunable=True,
        ),
        channels="conv_transpose",
    ),
    "Gemm": OpFacts(
        torch=_torch_op("gemm"),
        trainable_inputs=(1, 2),
        layer=LayerFacts(
            1,
            _fixed("linear"),
            _contracted_macs,
            {1: _gemm_axes()},
            codes=True,
            static_int8=True,
            prunable=True,
        ),
        channels="gemm",
    ),
    "MatMul": OpFacts(
        torch=_torch_op("matmul"),
        trainable_inputs=(0, 1),
        layer=LayerFacts(
            1,
            _fixed("linear"),
            _contracted_macs,
            # B (K, N) on the right; a stored A (M, K) on the left is cut by its rows
            {1: (_axis(-1), _axis(-2)), 0: (_axis(-2), _axis(-1))},
            codes=True,
            static_int8=True,
            dynamic_int8=True,
            nbits=True,
            prunable=True,
        ),
        channels="matmul",
    ),
    "LSTM": OpFacts(layer=_rnn_layer(4, dynamic_int8=True)),
    "GRU": OpFacts(layer=_rnn_layer(3)),
    "RNN": OpFacts(layer=_rnn_layer(1)),
    "Gather": OpFacts(
        torch=_torch_op("gather"),
        layer=LayerFacts(
            0, _fixed("embedding"), _no_macs, {0: (_axis(0), None)}, min_rank=2, codes=True
        ),
    ),
    "BatchNormalization": OpFacts(
        torch=_torch_op("batch_norm"), trainable_inputs=(1, 2), layer=_norm_layer(), channels="norm"
    ),
    "InstanceNormalization": OpFacts(layer=_norm_layer(), channels="norm"),
    "LayerNormalization": OpFacts(
        torch=_torch_op("layer_norm"), trainable_inputs=(1, 2), layer=_norm_layer()
    ),
    "GroupNormalization": OpFacts(layer=_norm_layer()),
    "PRelu": OpFacts(torch=_torch_op("prelu"), trainable_inputs=(1,), channels="prelu"),
    # already quantized layers (QOperator and integer forms)
    "ConvInteger": OpFacts(layer=_integer_layer(1, _conv_kind, _conv_macs)),
    "QLinearConv": OpFacts(layer=_integer_layer(3, _conv_kind, _conv_macs)),
    "MatMulInteger": OpFacts(layer=_integer_layer(1, _fixed("linear"), _contracted_macs)),
    "QLinearMatMul": OpFacts(layer=_integer_layer(3, _fixed("linear"), _contracted_macs)),
    "MatMulNBits": OpFacts(layer=_integer_layer(1, _fixed("linear"), _contracted_macs)),
    # activations
    "Relu": _unary("relu"),
    "LeakyRelu": _unary("leaky_relu"),
    "Elu": _unary("elu"),
    "Selu": _unary(None),
    "Celu": _unary(None),
    "ThresholdedRelu": _unary(None),
    "Sigmoid": _unary("sigmoid"),
    "HardSigmoid": _unary("hard_sigmoid"),
    "HardSwish": _unary("hard_swish"),
    "Tanh": _unary("tanh"),
    "Softplus": _unary("softplus"),
    "Softsign": _unary(None),
    "Mish": _unary(None),
    "Gelu": _unary("gelu"),
    "Erf": _unary("erf"),
    "Clip": _unary("clip"),
    "Softmax": _unary("softmax", channels=None),
    "LogSoftmax": _unary("log_softmax", channels=None),
    # pooling
    "MaxPool": _unary("max_pool"),
    "AveragePool": _unary("average_pool"),
    "LpPool": _unary(None),
    "GlobalAveragePool": _unary("global_average_pool"),
    "GlobalMaxPool": _unary("global_max_pool"),
    "ReduceMean": _unary("reduce_mean", channels=None),
    # arithmetic
    "Add": _binary("add"),
    "Sub": _binary("sub"),
    "Mul": _binary("mul"),
    "Div": _binary("div"),
    "Max": _binary(None),
    "Min": _binary(None),
    "Sum": _binary(None),
    "Pow": _unary("pow", channels=None),
    "Sqrt": _unary("sqrt"),
    "Exp": _unary("exp"),
    "Log": _unary(None),
    "Abs": _unary(None),
    "Neg": _unary("neg"),
    "Reciprocal": _unary("reciprocal"),
    "Floor": _unary(None),
    "Ceil": _unary(None),
    "Round": _unary(None),
    "Sign": _unary(None),
    # shapes and plumbing
    "Concat": _unary("concat", channels="concat"),
    "Reshape": _unary("reshape", channels="reshape"),
    "Flatten": _unary("flatten", channels="flatten"),
    "Transpose": _unary("transpose", channels=None),
    "Squeeze": _unary("squeeze", channels=None),
    "Unsqueeze": _unary("unsqueeze", channels=None),
    "Shape": _unary("shape", channels="shape"),
    "Slice": _unary("slice_", channels=None),
    "Split": _unary("split", channels=None),
    "Cast": _unary("cast"),
    "Identity": _unary("identity"),
    "Dropout": _unary("dropout"),
    "Pad": _unary("pad", channels="pad"),
    "Resize": _unary("resize", channels="resize"),
}


def facts_for(node: onnx.NodeProto) -> OpFacts | None:
    """The facts for a node of the standard domain, or None for an unknown op."""
    if node.domain not in ("", "ai.onnx"):
        return None
    return OPS.get(node.op_type)


def is_trainable_input(node: onnx.NodeProto, index: int, value: np.ndarray) -> bool:
    """Whether the stored float tensor at input `index` of `node` is a weight to train."""
    facts = facts_for(node)
    if facts is None or index not in facts.trainable_inputs or value.dtype.kind != "f":
        return False
    return value.size > 1 or not facts.elementwise


def layer_facts(node: onnx.NodeProto) -> LayerFacts | None:
    """The weight-bearing facts of a node of the standard domain, or None."""
    facts = facts_for(node)
    return facts.layer if facts is not None else None


def weight_axes(node: onnx.NodeProto, position: int, ndim: int) -> tuple[int, int | None] | None:
    """(output-channel axis, reduction axis or None) of a stored weight of rank `ndim` at input
    `position` of `node`, or None when the table does not know that input as a weight."""
    layer = layer_facts(node)
    rules = layer.axes.get(position) if layer is not None else None
    if rules is None:
        return None
    out_rule, in_rule = rules
    return out_rule(node, ndim), in_rule(node, ndim) if in_rule is not None else None
