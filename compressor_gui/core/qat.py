"""Quantization-aware training: the plan's bit widths simulated on a `GraphModule`.

Weights are fake-quantized the way the writer will store them (the quantizer's own codecs:
`quant_ops.CODECS`, INT4 blocks of 32 along the reduction axis, 7-bit codes for an INT8 form
with reduce_range, FP16 rounding) with a straight-through estimator: the forward pass
computes with codes * scale, the gradient reaches the float weight unchanged. Layers that
will run as static INT8 (QDQ) also get their input activations fake-quantized as u8 per
tensor, over ranges tracked by a moving min/max, as onnxruntime's calibration would set them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import onnx
import torch
from torch import nn

from compressor_gui.core.distill_types import QatLayer
from compressor_gui.core.hardware import MachineInfo
from compressor_gui.core.int8_forms import FORMS, Int8Form, rule_form
from compressor_gui.core.ops import weight_axes
from compressor_gui.core.plan import INT4_BLOCK_SIZE, CompressionPlan, LayerSetting
from compressor_gui.core.quant_ops import CODECS, dequantized, int4_blocks, linear_codes, rule_for
from compressor_gui.core.torch_graph import GraphModule, tensor_key

ACTIVATION_MOMENTUM = 0.1  # weight of each batch's min/max in the tracked range
Encoder = Callable[[np.ndarray], np.ndarray]


class FakeQuantWeight(nn.Module):
    """Forward: the weight as stored (codes * scale); backward: straight through."""

    def __init__(self, encode: Encoder) -> None:
        super().__init__()
        self.encode = encode

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        stored = torch.from_numpy(self.encode(weight.detach().cpu().numpy())).to(weight.dtype)
        return weight + (stored - weight).detach()


class FakeQuantActivation(nn.Module):
    """u8 asymmetric per-tensor fake quantization; the range (always holding 0, as
    onnxruntime's) follows a moving min/max in training and is frozen in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("low", torch.tensor(0.0))
        self.register_buffer("high", torch.tensor(0.0))
        self.register_buffer("seen", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                low, high = x.min().clamp(max=0.0), x.max().clamp(min=0.0)
                if not bool(self.seen):
                    self.low.copy_(low), self.high.copy_(high), self.seen.fill_(True)
                else:
                    self.low.lerp_(low, ACTIVATION_MOMENTUM)
                    self.high.lerp_(high, ACTIVATION_MOMENTUM)
        if not bool(self.seen):
            return x
        scale = float(max((self.high - self.low).item() / 255.0, 1e-8))
        zero_point = int(round(-self.low.item() / scale))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, 255)


def training_form(plan: CompressionPlan, machine: MachineInfo) -> Int8Form:
    """The INT8 form to simulate: the plan's, or the rule for the target CPU's family (the
    final write then uses this form too, so what was trained is what is written)."""
    return FORMS[plan.int8_form] if plan.int8_form != "auto" else rule_form(machine)


def attach_fake_quant(
    module: GraphModule,
    model: onnx.ModelProto,
    settings: Mapping[str, LayerSetting],
    form: Int8Form,
) -> tuple[QatLayer, ...]:
    """Simulate each layer's bit width (from `settings`, by node name) on `module`."""
    nodes = {node.name: node for node in model.graph.node if node.name}
    done = []
    for name, setting in settings.items():
        node = nodes.get(name)
        rule = rule_for(node) if node is not None else None
        if setting.bits >= 32 or rule is None or len(node.input) <= rule.weight_input:
            continue
        weight = node.input[rule.weight_input]
        key = tensor_key(weight)
        if weight not in module.keys or key in module.weight_transforms:
            continue  # computed or shared weights are quantized once, by their first layer
        array = module.stored(weight).detach().numpy()
        if array.ndim < 2 or array.dtype.kind != "f":
            continue
        encode, words = _encoder(node, array.shape, setting, form)
        module.weight_transforms[key] = FakeQuantWeight(encode)
        if setting.bits == 8 and rule.static_int8:
            for value in node.input[: rule.weight_input]:
                if value not in module.keys and tensor_key(value) not in module.value_transforms:
                    module.value_transforms[tensor_key(value)] = FakeQuantActivation()
            words += ", u8 input activations"
        done.append(QatLayer(name, setting.bits, words))
    return tuple(done)


def _encoder(
    node: onnx.NodeProto, shape: tuple[int, ...], setting: LayerSetting, form: Int8Form
) -> tuple[Encoder, str]:
    """How the writer will store this weight, as a float -> stored-float function."""
    bits, per_channel = setting.bits, setting.per_channel
    if bits == 16:
        return (lambda w: w.astype(np.float16).astype(w.dtype)), "FP16"
    axis, block_axis = weight_axes(node, rule_for(node).weight_input, len(shape))
    if bits == 4 and block_axis is not None and shape[block_axis] >= INT4_BLOCK_SIZE:

        def blocked(w: np.ndarray) -> np.ndarray:
            codes, scale = int4_blocks(w.astype(np.float32), block_axis, INT4_BLOCK_SIZE)
            full = np.repeat(scale, INT4_BLOCK_SIZE, axis=block_axis)
            return codes * np.take(full, range(shape[block_axis]), axis=block_axis)

        return blocked, f"INT4 blocks of {INT4_BLOCK_SIZE}"
    codec = linear_codes(7) if bits == 8 and form.reduce_range else CODECS[bits]

    def per_row(w: np.ndarray) -> np.ndarray:
        return dequantized(*codec(w.astype(np.float32), axis, per_channel), axis)

    names = {8: f"INT8 ({form.name})", 4: "INT4", 2: "ternary", 1: "binary"}
    return per_row, f"{names[bits]} weights, {'per channel' if per_channel else 'per tensor'}"
