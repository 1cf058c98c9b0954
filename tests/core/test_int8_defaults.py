"""Default static INT8 quantizes the layers and leaves the activations between them float,
and writes no long names for what it added."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compressor_gui.core.data import Dataset
from compressor_gui.core.evaluate import fidelity, make_session, run_outputs
from compressor_gui.core.plan import CompressionPlan, LayerSetting
from compressor_gui.core.quant_passes import Int8Options
from compressor_gui.core.quantize import quantize_model

CHANNELS = 8
ELEMENTWISE = ("HardSigmoid", "Mul", "Add")


def _hardswish_stack(depth: int = 6) -> onnx.ModelProto:
    """Conv -> HardSwish (x * HardSigmoid(x)) -> residual Add, `depth` times: the pattern of
    MobileNetV3 / PP-LCNet, whose elementwise tensors onnxruntime would quantize too."""
    rng = np.random.default_rng(0)
    nodes, weights, value = [], [], "x"
    for i in range(depth):
        w = rng.standard_normal((CHANNELS, CHANNELS, 3, 3)) * np.sqrt(2 / (CHANNELS * 9))
        weights.append(numpy_helper.from_array(w.astype(np.float32), f"w{i}"))
        nodes += [
            helper.make_node("Conv", [value, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1] * 4),
            helper.make_node("HardSigmoid", [f"c{i}"], [f"g{i}"], name=f"gate{i}"),
            helper.make_node("Mul", [f"c{i}", f"g{i}"], [f"h{i}"], name=f"swish{i}"),
            helper.make_node("Add", [f"h{i}", value], [f"r{i}"], name=f"residual{i}"),
        ]
        value = f"r{i}"
    shape = ["n", CHANNELS, 8, 8]
    graph = helper.make_graph(
        nodes,
        "hardswish_stack",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(value, TensorProto.FLOAT, shape)],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _data(count: int, seed: int) -> Dataset:
    x = np.random.default_rng(seed).normal(0, 1, (count, CHANNELS, 8, 8)).astype(np.float32)
    return Dataset({"x": x}, {"x": "batch"}, source="noise")


def _quantized(model: onnx.ModelProto, options: Int8Options | None = None) -> onnx.ModelProto:
    plan = CompressionPlan(default=LayerSetting(bits=8), int8_form="u8u8")
    return quantize_model(model, plan, _data(64, 1), options=options).model


def _sqnr_db(model: onnx.ModelProto, quantized: onnx.ModelProto) -> float:
    held_out = _data(32, 2)
    reference = run_outputs(make_session(model), held_out)
    return fidelity(reference, run_outputs(make_session(quantized), held_out))[2]


def test_only_the_layers_tensors_are_quantized_and_that_loses_less():
    model = _hardswish_stack()
    default = _quantized(model)
    conv_tensors = {name for n in model.graph.node if n.op_type == "Conv" for name in n.input}
    conv_tensors |= {n.output[0] for n in model.graph.node if n.op_type == "Conv"}
    quantized = {n.input[0] for n in default.graph.node if n.op_type == "QuantizeLinear"}
    assert quantized and quantized <= conv_tensors
    everything = _quantized(model, Int8Options(op_types=("Conv", *ELEMENTWISE)))
    assert _sqnr_db(model, default) > _sqnr_db(model, everything)


def test_activation_dequantize_outputs_get_short_names():
    model = _hardswish_stack(depth=2)
    quantized = _quantized(model)
    float_names = {name for n in model.graph.node for name in (*n.input, *n.output)}
    added = [
        n.output[0]
        for n in quantized.graph.node
        if n.op_type == "DequantizeLinear" and n.output[0] not in float_names
    ]
    assert added and all(len(name) <= 4 for name in added)


def test_a_relu_after_a_layer_is_folded_into_its_quantized_output():
    from tests.modelgen import conv_stack

    model = conv_stack()
    data = Dataset(
        {"x": np.random.default_rng(1).normal(0, 1, (32, 8, 8, 8)).astype(np.float32)},
        {"x": "batch"},
    )
    plan = CompressionPlan(default=LayerSetting(bits=8), int8_form="u8u8")
    quantized = quantize_model(model, plan, data).model
    assert any(n.op_type == "Relu" for n in model.graph.node)
    assert not any(n.op_type == "Relu" for n in quantized.graph.node)
