"""The op table: one entry per op type, read by the inventory, quantization, pruning and
sweeps, so that they agree with each other and an op is added in one place."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressor_gui.core import sensitivity as sens
from compressor_gui.core.inventory import build_inventory
from compressor_gui.core.ops import OPS, weight_axes
from compressor_gui.core.plan import LayerSetting
from compressor_gui.core.prune import prune_n_m
from compressor_gui.core.prune_graph import HANDLERS


def _conv_transpose(channels_in=8, channels_out=4) -> onnx.ModelProto:
    weight = np.random.default_rng(0).standard_normal((channels_in, channels_out, 3, 3))
    graph = helper.make_graph(
        [helper.make_node("ConvTranspose", ["x", "W"], ["y"], name="up", strides=[2, 2])],
        "up",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels_in, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels_out, 9, 9])],
        [numpy_helper.from_array(weight.astype(np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_the_table_and_its_readers_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import compressor_gui.core.ops, compressor_gui.core.inventory\n"
        "import compressor_gui.core.quant_ops, compressor_gui.core.prune_graph\n"
        "print(len(compressor_gui.core.ops.OPS))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(OPS)


def test_every_channel_rule_the_table_names_exists():
    named = {op: facts.channels for op, facts in OPS.items() if facts.channels}
    assert {"Conv", "Relu", "Add", "Concat", "BatchNormalization"} <= set(named)
    assert [op for op, rule in named.items() if rule not in HANDLERS] == []


def test_weight_axes_follow_the_node_attributes_and_the_input_position():
    gemm = helper.make_node("Gemm", ["a", "b"], ["y"], transB=1)
    assert weight_axes(gemm, 1, 2) == (0, 1)
    gemm.attribute[0].i = 0
    assert weight_axes(gemm, 1, 2) == (1, 0)
    matmul = helper.make_node("MatMul", ["a", "b"], ["y"])
    assert weight_axes(matmul, 1, 3) == (2, 1)  # B: (..., K, N)
    assert weight_axes(matmul, 0, 2) == (0, 1)  # a stored A: (M, K)
    assert weight_axes(helper.make_node("Relu", ["a"], ["y"]), 0, 2) is None


def test_two_of_four_groups_run_along_the_same_axis_in_pruning_and_sweeps():
    model = _conv_transpose()  # weight (C_in, C_out, k, k): the reduction axis is 0
    weight = numpy_helper.to_array(model.graph.initializer[0])
    pruned, report = prune_n_m(model, ["up"])
    written = numpy_helper.to_array(pruned.graph.initializer[0])
    layer = next(layer for layer in sens.swept_layers(model) if layer.name == "up")
    simulated = sens.simulate(weight, layer, LayerSetting(prune_ratio=0.5, prune_pattern="2:4"))
    assert report.layers[0].sparsity == 0.5
    np.testing.assert_array_equal(written == 0, simulated == 0)


def test_removing_an_entry_makes_every_reader_forget_the_op(monkeypatch):
    model = _conv_transpose()
    assert build_inventory(model).layer("up").kind == "conv_transpose"
    assert [layer.name for layer in sens.swept_layers(model)] == ["up"]
    monkeypatch.delitem(OPS, "ConvTranspose")
    assert build_inventory(model).layer("W").kind == "other"
    assert sens.swept_layers(model) == []
    with pytest.raises(Exception, match="no Conv/Gemm/MatMul layer named 'up'"):
        prune_n_m(model, ["up"])
