"""Default static INT8 keeps the layers that break the output float, and says which."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compressor_gui.core.data import Dataset
from compressor_gui.core.evaluate import fidelity, make_session, run_outputs
from compressor_gui.core.plan import CompressionPlan, LayerSetting
from compressor_gui.core.quant_passes import TARGET_COSINE
from compressor_gui.core.quantize import quantize_model


def _outlier_input_model() -> onnx.ModelProto:
    """Two MatMul layers; the first reads an input whose feature 0 is 1000x the others (its
    weight row scaled down to match), so an INT8 input scale leaves the others nothing."""
    rng = np.random.default_rng(0)
    first = rng.normal(0, 0.2, (32, 32)).astype(np.float32)
    first[0] *= 1e-3
    second = rng.normal(0, 0.2, (32, 16)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"], name="outlier_fc"),
            helper.make_node("Relu", ["h"], ["r"], name="relu"),
            helper.make_node("MatMul", ["r", "w2"], ["y"], name="plain_fc"),
        ],
        "outlier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16])],
        [numpy_helper.from_array(first, "w1"), numpy_helper.from_array(second, "w2")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _data(count: int, seed: int) -> Dataset:
    x = np.random.default_rng(seed).normal(0, 1, (count, 32)).astype(np.float32)
    x[:, 0] *= 1000
    return Dataset({"x": x}, {"x": "batch"}, source="outliers")


def test_the_layer_that_breaks_int8_stays_float_and_is_named():
    model = _outlier_input_model()
    result = quantize_model(model, CompressionPlan(default=LayerSetting(bits=8)), _data(64, 1))
    methods = {a.name: a.method for a in result.actions}
    assert methods["outlier_fc"] == "float32 (kept)" and "INT8" in methods["plain_fc"]
    assert any("kept float" in w and "outlier_fc" in w for w in result.warnings)
    held_out = _data(32, 2)
    reference = run_outputs(make_session(model), held_out)
    cosine = fidelity(reference, run_outputs(make_session(result.model), held_out))[1]
    assert cosine >= TARGET_COSINE


def test_static_int8_stores_no_zero_zero_points_and_keeps_the_layer_names():
    from tests.modelgen import conv_stack

    model = conv_stack()
    data = Dataset(
        {"x": np.random.default_rng(0).normal(0, 1, (32, 8, 8, 8)).astype(np.float32)},
        {"x": "batch"},
    )
    result = quantize_model(model, CompressionPlan(default=LayerSetting(bits=8)), data)
    stored = {t.name: t.data_type for t in result.model.graph.initializer}
    signed = (TensorProto.INT8, TensorProto.INT32)
    weight_dqs = [
        n
        for n in result.model.graph.node
        if n.op_type == "DequantizeLinear" and stored.get(n.input[0]) in signed
    ]
    assert weight_dqs and all(len(n.input) == 2 for n in weight_dqs)
    layers = {n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}
    assert layers <= {n.name for n in result.model.graph.node}
    reference = run_outputs(make_session(model), data)
    assert fidelity(reference, run_outputs(make_session(result.model), data))[1] >= 0.99


def test_compacting_a_quantized_model_leaves_input_free_constant_nodes_as_they_are():
    from compressor_gui.core.quant_passes import _compact_added

    model = _outlier_input_model()
    shape = numpy_helper.from_array(np.array([-1, 16], np.int64), "shape_value")
    model.graph.node.append(helper.make_node("Constant", [], ["shape"], value=shape))
    model.graph.node.append(helper.make_node("Reshape", ["y", "shape"], ["flat"], name="flat"))
    model.graph.output[0].name = "flat"
    compacted = _compact_added(onnx.ModelProto.FromString(model.SerializeToString()), model)
    assert [n.output[0] for n in compacted.graph.node][-2:] == ["shape", "flat"]
