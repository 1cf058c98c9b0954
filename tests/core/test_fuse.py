"""Fusion: BatchNorm folded into Conv/Gemm, Identity and dead nodes dropped, same outputs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressor_gui.core.errors import CompressionError
from compressor_gui.core.fuse import fuse_model
from compressor_gui.core.graph import run_model
from compressor_gui.core.shapes import random_feed
from tests import modelgen


def _bn_params(prefix: str, channels: int, seed: int) -> list[onnx.TensorProto]:
    rng = np.random.default_rng(seed)
    values = {
        "scale": rng.uniform(0.5, 1.5, channels),
        "bias": rng.normal(0, 0.1, channels),
        "mean": rng.normal(0, 0.5, channels),
        "var": rng.uniform(0.5, 2.0, channels),
    }
    return [
        numpy_helper.from_array(v.astype(np.float32), f"{prefix}.{k}") for k, v in values.items()
    ]


def _conv_bn_model(shared_weight: bool = False) -> onnx.ModelProto:
    """x -> Conv -> BN -> Identity -> Relu -> y, plus a dead Sigmoid branch; optionally a
    second Conv reading the same weight (which must not change)."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "W")
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1] * 4),
        helper.make_node(
            "BatchNormalization",
            ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"],
            ["b"],
            name="bn",
            epsilon=1e-3,
        ),
        helper.make_node("Identity", ["b"], ["i"], name="identity"),
        helper.make_node("Relu", ["i"], ["y"], name="relu"),
        helper.make_node("Sigmoid", ["i"], ["unused"], name="dead"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])]
    if shared_weight:
        nodes.append(helper.make_node("Conv", ["x", "W"], ["y2"], name="conv2", pads=[1] * 4))
        outputs.append(helper.make_tensor_value_info("y2", TensorProto.FLOAT, [1, 8, 8, 8]))
    graph = helper.make_graph(
        nodes,
        "conv_bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        outputs,
        [weight, *_bn_params("bn", 8, 1)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _outputs_match(a: onnx.ModelProto, b: onnx.ModelProto, atol: float = 1e-4) -> bool:
    feed = random_feed(a)
    return all(
        np.allclose(x, y, atol=atol)
        for x, y in zip(run_model(a, feed), run_model(b, feed), strict=True)
    )


def test_demo_batch_norms_fold_into_convs_with_identical_outputs(demo_onnx):
    model = onnx.load(demo_onnx)
    fused, report = fuse_model(model)
    assert not [n for n in fused.graph.node if n.op_type == "BatchNormalization"]
    assert report.nodes_after < report.nodes_before
    assert len(report.folded) == 11
    assert report.max_abs_diff <= 1e-4 and _outputs_match(model, fused)


def test_fused_layers_keep_their_node_names_for_the_plan(demo_onnx):
    model = onnx.load(demo_onnx)
    fused, _ = fuse_model(model)
    before = {n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm")}
    assert before <= {n.name for n in fused.graph.node}


def test_identity_and_dead_nodes_are_dropped():
    model = _conv_bn_model()
    fused, report = fuse_model(model)
    assert [n.op_type for n in fused.graph.node] == ["Conv", "Relu"]
    assert report.removed_identity == 1 and report.removed_dead == 1
    assert _outputs_match(model, fused)


def test_shared_conv_weight_is_copied_not_rescaled_for_the_other_user():
    model = _conv_bn_model(shared_weight=True)
    fused, _ = fuse_model(model)
    conv2 = next(n for n in fused.graph.node if n.name == "conv2")
    assert conv2.input[1] == "W"
    assert _outputs_match(model, fused)


def test_gemm_followed_by_batch_norm_folds():
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "W", "b"], ["g"], name="fc", transB=0, beta=0.5),
            helper.make_node(
                "BatchNormalization",
                ["g", "bn.scale", "bn.bias", "bn.mean", "bn.var"],
                ["y"],
                name="bn",
            ),
        ],
        "gemm_bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6])],
        [
            numpy_helper.from_array(rng.standard_normal((16, 6)).astype(np.float32), "W"),
            numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "b"),
            *_bn_params("bn", 6, 2),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    fused, report = fuse_model(model)
    assert report.folded == (("bn", "fc"),)
    assert _outputs_match(model, fused, atol=1e-5)


def test_input_model_is_not_modified(demo_onnx):
    model = onnx.load(demo_onnx)
    before = model.SerializeToString()
    fuse_model(model)
    assert model.SerializeToString() == before


def test_a_model_random_inputs_cannot_run_is_fused_and_verified_on_its_data():
    model = modelgen.rate_gated_conv_bn()
    with pytest.raises(CompressionError, match="on random inputs"):
        fuse_model(model)
    feeds = [{**random_feed(model, seed=seed), "rate": np.array(16000)} for seed in (1, 2)]
    fused, report = fuse_model(model, feeds=feeds)
    assert report.folded == (("bn", "conv"),)
    assert not [n for n in fused.graph.node if n.op_type == "BatchNormalization"]
    for feed in feeds:
        assert np.allclose(run_model(model, feed)[0], run_model(fused, feed)[0], atol=1e-4)
