"""Unstructured and N:M pruning, and pruning driven by a CompressionPlan."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compressor_gui.core.graph import run_model
from compressor_gui.core.plan import CompressionPlan, LayerSetting
from compressor_gui.core.prune import (
    apply_pruning,
    global_unstructured_ratios,
    prune_n_m,
    prune_unstructured,
    verify_n_m,
)
from compressor_gui.core.shapes import random_feed
from compressor_gui.core.sizes import compressed_size_bytes, dense_size_bytes, size_report
from tests import modelgen


def _weight(model: onnx.ModelProto, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def _layers(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm")]


def test_unstructured_zeroes_the_smallest_weights_to_the_ratio():
    model = modelgen.linear(64, 32)
    pruned, report = prune_unstructured(model, {"fc": 0.75})
    before, after = _weight(model, "W"), _weight(pruned, "W")
    assert report.layers[0].sparsity == pytest.approx(0.75)
    kept = after != 0
    assert np.abs(before[kept]).min() >= np.abs(before[~kept]).max()
    np.testing.assert_array_equal(_weight(pruned, "b"), _weight(model, "b"))


def test_unstructured_leaves_the_input_model_untouched():
    model = modelgen.linear()
    before = model.SerializeToString()
    prune_unstructured(model, {"fc": 0.5})
    assert model.SerializeToString() == before


def test_unstructured_prunes_weights_held_in_constant_nodes():
    model = modelgen.constant_weight_conv()
    name = next(n.name for n in model.graph.node if n.op_type == "Conv")
    pruned, report = prune_unstructured(model, {name: 0.5})
    assert not report.skipped
    assert report.layers[0].sparsity == pytest.approx(0.5, abs=0.02)


def test_ninety_percent_unstructured_deflates_below_a_fifth(demo_onnx):
    model = onnx.load(demo_onnx)
    pruned, _ = prune_unstructured(model, dict.fromkeys(_layers(model), 0.9))
    assert compressed_size_bytes(pruned) <= 0.2 * dense_size_bytes(model)
    assert dense_size_bytes(pruned) == pytest.approx(dense_size_bytes(model), rel=0.01)


def test_global_ratios_meet_the_total_and_respect_caps(demo_onnx):
    model = onnx.load(demo_onnx)
    layers = _layers(model)
    ratios = global_unstructured_ratios(model, 0.8, layers, caps={"/fc/Gemm": 0.1})
    assert ratios["/fc/Gemm"] <= 0.1 + 1e-9
    pruned, report = prune_unstructured(model, ratios)
    weights = [_weight(pruned, n.input[1]) for n in pruned.graph.node if n.name in ratios]
    zeros = sum(int(np.count_nonzero(w == 0)) for w in weights)
    assert zeros / sum(w.size for w in weights) == pytest.approx(0.8, abs=0.005)


def test_verify_n_m_accepts_two_of_four_and_refuses_three():
    good = np.array([[1, 0, 2, 0, 0, 0, 3, 4]], dtype=np.float32)
    assert verify_n_m(good, 2, 4)
    assert not verify_n_m(np.array([[1, 1, 1, 0]]), 2, 4)
    assert not verify_n_m(np.ones((2, 6)), 2, 4)  # 6 is not a multiple of 4


def test_two_four_runs_along_the_input_dimension_of_gemm_and_conv(demo_onnx):
    model = onnx.load(demo_onnx)
    pruned, report = prune_n_m(model, ["/fc/Gemm", "/block1/conv1/Conv"])
    fc = _weight(pruned, "fc.weight")  # Gemm transB=1: [out, in], input is axis 1
    conv = _weight(pruned, "block1.conv1.weight")  # [out, in, kh, kw], input is axis 1
    assert verify_n_m(fc, 2, 4, axis=1) and verify_n_m(conv, 2, 4, axis=1)
    assert {layer.sparsity for layer in report.layers} == {0.5}
    assert set(report.n_m_weights) == {"fc.weight", "block1.conv1.weight"}
    sizes = size_report(pruned, report.n_m_weights)
    assert sizes.sparse_format_size_bytes < sizes.dense_size_bytes


def test_two_four_keeps_the_two_largest_of_each_group():
    model = modelgen.linear(8, 2)
    pruned, _ = prune_n_m(model, ["fc"])
    before, after = _weight(model, "W").reshape(-1, 4), _weight(pruned, "W").reshape(-1, 4)
    for row_before, row_after in zip(before, after, strict=True):
        largest = set(np.argsort(-np.abs(row_before))[:2])
        assert set(np.flatnonzero(row_after)) == largest


def test_two_four_skips_a_layer_whose_input_is_not_a_multiple_of_four(demo_onnx):
    model = onnx.load(demo_onnx)
    _, report = prune_n_m(model, ["/stem/conv/Conv", "/dwsep/depthwise/conv/Conv"])
    assert {s.name for s in report.skipped} == {"/stem/conv/Conv", "/dwsep/depthwise/conv/Conv"}
    assert "multiple of 4" in report.skipped[0].reason


def test_quantized_weights_are_reported_not_pruned():
    model = modelgen.linear(8, 4)
    graph = model.graph
    weight = next(t for t in graph.initializer if t.name == "W")
    graph.initializer.remove(weight)
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.ones((4, 8), np.int8), "W_q"),
            numpy_helper.from_array(np.array(0.1, np.float32), "W_s"),
        ]
    )
    graph.node.insert(
        0, onnx.helper.make_node("DequantizeLinear", ["W_q", "W_s"], ["W"], name="dq")
    )
    _, report = prune_unstructured(model, {"fc": 0.5})
    assert "quantized" in report.skipped[0].reason


def test_plan_mixes_channel_and_unstructured_and_reports_totals(demo_onnx):
    model = onnx.load(demo_onnx)
    plan = CompressionPlan(
        layers={
            "/block1/conv1/Conv": LayerSetting(prune_ratio=0.5, prune_pattern="channel"),
            "/fc/Gemm": LayerSetting(prune_ratio=0.6),
        }
    )
    pruned, report = apply_pruning(model, plan)
    assert {(layer.name, layer.pattern) for layer in report.layers} == {
        ("/block1/conv1/Conv", "channel"),
        ("/fc/Gemm", "unstructured"),
    }
    assert report.params_after < report.params_before and report.macs_after < report.macs_before
    assert _weight(pruned, "block1.conv1.weight").shape[0] == 16
    feed = random_feed(model)
    assert run_model(pruned, feed)[0].shape == run_model(model, feed)[0].shape
