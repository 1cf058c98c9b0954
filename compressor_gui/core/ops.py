"""One table of facts per ONNX op type: `OPS[op_type] -> OpFacts`.

Every module that needs to know something about an op type reads it here, so adding an op is
one entry. Today an entry says how the op runs in torch (for training: distillation and
quantization-aware fine-tuning) and which of its stored inputs are trainable weights; the
other facts (weight inputs, channel axes, kind, MACs, what each compression can do) move in
from inventory, quantization, pruning and sensitivity as those modules migrate.

The table stays importable without torch (the desktop bundle ships without it): torch
builders live in `torch_ops` and are imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from compressor_gui.core.errors import CompressorError


class UnsupportedOpError(CompressorError):
    """A node the torch conversion cannot run (unknown op, or a mode it does not cover)."""


@dataclass(frozen=True)
class NodeView:
    """What a builder may know about one node: its attributes, the values of its stored
    (initializer or Constant) inputs, and the model's opset."""

    node: onnx.NodeProto
    opset: int
    constants: Mapping[str, np.ndarray]

    def attr(self, name: str, default: Any = None) -> Any:
        for attribute in self.node.attribute:
            if attribute.name == name:
                value = onnx.helper.get_attribute_value(attribute)
                return value.decode() if isinstance(value, bytes) else value
        return default

    def has_input(self, index: int) -> bool:
        return len(self.node.input) > index and bool(self.node.input[index])

    def constant(self, index: int) -> np.ndarray | None:
        """The stored value of input `index`, or None when it is computed or absent."""
        if not self.has_input(index):
            return None
        return self.constants.get(self.node.input[index])

    def unsupported(self, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(
            f"node {self.node.name or '(unnamed)'} ({self.node.op_type}): {why}"
        )


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


@dataclass(frozen=True)
class OpFacts:
    """What the project knows about one op type.

    `torch`: how the op runs in torch. `trainable_inputs`: input positions that are weights
    when stored (they become torch Parameters named after their initializers; elementwise
    ops count only operands of more than one value, so an exporter's scalar constants such
    as HardSwish's 3 and 6 stay constants)."""

    torch: TorchBuilder | None = None
    trainable_inputs: tuple[int, ...] = ()
    elementwise: bool = False


def _unary(name: str) -> OpFacts:
    return OpFacts(torch=_torch_op(name))


def _binary(name: str) -> OpFacts:
    return OpFacts(torch=_torch_op(name), trainable_inputs=(0, 1), elementwise=True)


OPS: dict[str, OpFacts] = {
    # layers with weights
    "Conv": OpFacts(torch=_torch_op("conv"), trainable_inputs=(1, 2)),
    "ConvTranspose": OpFacts(torch=_torch_op("conv_transpose"), trainable_inputs=(1, 2)),
    "Gemm": OpFacts(torch=_torch_op("gemm"), trainable_inputs=(1, 2)),
    "MatMul": OpFacts(torch=_torch_op("matmul"), trainable_inputs=(0, 1)),
    "BatchNormalization": OpFacts(torch=_torch_op("batch_norm"), trainable_inputs=(1, 2)),
    "LayerNormalization": OpFacts(torch=_torch_op("layer_norm"), trainable_inputs=(1, 2)),
    "PRelu": OpFacts(torch=_torch_op("prelu"), trainable_inputs=(1,)),
    # activations
    "Relu": _unary("relu"),
    "LeakyRelu": _unary("leaky_relu"),
    "Elu": _unary("elu"),
    "Sigmoid": _unary("sigmoid"),
    "HardSigmoid": _unary("hard_sigmoid"),
    "HardSwish": _unary("hard_swish"),
    "Tanh": _unary("tanh"),
    "Softplus": _unary("softplus"),
    "Gelu": _unary("gelu"),
    "Erf": _unary("erf"),
    "Clip": _unary("clip"),
    "Softmax": _unary("softmax"),
    "LogSoftmax": _unary("log_softmax"),
    # pooling
    "MaxPool": _unary("max_pool"),
    "AveragePool": _unary("average_pool"),
    "GlobalAveragePool": _unary("global_average_pool"),
    "GlobalMaxPool": _unary("global_max_pool"),
    "ReduceMean": _unary("reduce_mean"),
    # arithmetic
    "Add": _binary("add"),
    "Sub": _binary("sub"),
    "Mul": _binary("mul"),
    "Div": _binary("div"),
    "Pow": _unary("pow"),
    "Sqrt": _unary("sqrt"),
    "Exp": _unary("exp"),
    "Neg": _unary("neg"),
    "Reciprocal": _unary("reciprocal"),
    # shapes and plumbing
    "Concat": _unary("concat"),
    "Reshape": _unary("reshape"),
    "Flatten": _unary("flatten"),
    "Transpose": _unary("transpose"),
    "Squeeze": _unary("squeeze"),
    "Unsqueeze": _unary("unsqueeze"),
    "Shape": _unary("shape"),
    "Gather": _unary("gather"),
    "Slice": _unary("slice_"),
    "Cast": _unary("cast"),
    "Identity": _unary("identity"),
    "Dropout": _unary("dropout"),
    "Pad": _unary("pad"),
    "Resize": _unary("resize"),
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
