"""Default static INT8 that cannot hold the output cosine, even with its worst layers float,
gives way to INT8 weight-only (as small a file, float activations) when that holds it."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compressor_gui.core import quant_passes
from compressor_gui.core.data import Dataset
from compressor_gui.core.evaluate import fidelity, make_session, run_outputs
from compressor_gui.core.plan import CompressionPlan, LayerSetting
from compressor_gui.core.quant_passes import TARGET_COSINE
from compressor_gui.core.quantize import quantize_model

WIDTH, DEPTH, LOUD = 32, 8, 1000.0


def _loud_feature_chain() -> onnx.ModelProto:
    """DEPTH 1x1 Conv layers that carry channel 0, LOUD times the others, through unchanged
    and mix the others; the last one reads only the quiet channels. Every layer's INT8 input
    scale is spent on channel 0, so static INT8 loses the quiet channels at every layer
    (more layers than the float budget can keep); their weights alone quantize well.
    (Conv, not MatMul: onnxruntime runs a weight-only MatMul as MatMulNBits, whose CPU
    kernel quantizes the activations too.) Before them `blend` adds channel 0 to every
    channel and takes it off again with its bias, as PP-OCRv4 rec's first depthwise Conv
    sums kernels to ~0 over inputs with a large mean: its quiet weights are under half an
    INT8 step of its loud ones, so its weights alone break weight-only INT8."""
    rng = np.random.default_rng(0)
    blend = np.zeros((WIDTH, WIDTH, 1, 1), np.float32)
    blend[:, 0] = 1.0
    blend[1:, 1:, 0, 0] = 0.002 * np.linalg.qr(rng.standard_normal((WIDTH - 1, WIDTH - 1)))[0]
    offset = np.full(WIDTH, -LOUD, np.float32)
    offset[0] = 0.0
    weights = [numpy_helper.from_array(blend, "w_blend"), numpy_helper.from_array(offset, "b")]
    nodes = [helper.make_node("Conv", ["x", "w_blend", "b"], ["blended"], "blend")]
    previous = "blended"
    for index in range(DEPTH):
        mixing = np.linalg.qr(rng.standard_normal((WIDTH - 1, WIDTH - 1)))[0]
        weight = np.zeros((WIDTH, WIDTH, 1, 1), np.float32)
        weight[0, 0], weight[1:, 1:, 0, 0] = 1.0, mixing
        weights.append(numpy_helper.from_array(weight, f"w{index}"))
        nodes.append(helper.make_node("Conv", [previous, f"w{index}"], [f"h{index}"], f"fc{index}"))
        previous = f"h{index}"
    last = (rng.standard_normal((16, WIDTH, 1, 1)) / np.sqrt(WIDTH)).astype(np.float32)
    last[:, 0] = 0.0
    weights.append(numpy_helper.from_array(last, "w_out"))
    nodes.append(helper.make_node("Conv", [previous, "w_out"], ["y"], "fc_out"))
    graph = helper.make_graph(
        nodes,
        "loud_feature_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", WIDTH, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16, 4, 4])],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _data(count: int, seed: int) -> Dataset:
    x = np.random.default_rng(seed).normal(0, 1, (count, WIDTH, 4, 4)).astype(np.float32)
    x[:, 0] = LOUD
    return Dataset({"x": x}, {"x": "batch"}, source="loud feature")


def _held_out_cosine(model: onnx.ModelProto, result: onnx.ModelProto) -> float:
    held_out = _data(32, 2)
    reference = run_outputs(make_session(model), held_out)
    return fidelity(reference, run_outputs(make_session(result), held_out))[1]


def test_weight_only_int8_holds_the_cosine_where_static_int8_cannot(monkeypatch):
    model, plan, data = (
        _loud_feature_chain(),
        CompressionPlan(default=LayerSetting(bits=8)),
        _data(64, 1),
    )
    result = quantize_model(model, plan, data)
    with monkeypatch.context() as patched:  # the default before the fallback existed
        patched.setattr(quant_passes, "_weight_only_if_it_holds", lambda *a: a[3][:2])
        static = quantize_model(model, plan, data)

    assert _held_out_cosine(model, static.model) < TARGET_COSINE
    assert _held_out_cosine(model, result.model) >= TARGET_COSINE
    methods = {action.name: action.method for action in result.actions}
    assert all("weight-only" in methods[f"fc{i}"] for i in range(DEPTH))
    assert methods["blend"] == "float32 (kept)"
    assert any("weight-only instead" in w and "blend float" in w for w in result.warnings)
    codes = [t for t in result.model.graph.initializer if t.data_type == TensorProto.INT8]
    assert sum(len(t.raw_data) for t in codes) >= DEPTH * WIDTH * WIDTH
