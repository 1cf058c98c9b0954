"""Structured channel pruning on ONNX graphs: every op the surgery touches, residual groups,
depthwise convs, Concat offsets, Flatten -> Gemm, and refusal of ops it cannot handle.

Exactness oracle: the test models have "dead" channels (zero filters, zero BN scale and
shift), so cutting exactly those channels must leave the outputs unchanged; any wrong index
in a consumer, a Concat offset or a Flatten block would change them.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from compressor_gui.core.errors import CompressionError
from compressor_gui.core.graph import run_model
from compressor_gui.core.prune import channel_groups, prune_channels
from compressor_gui.core.shapes import random_feed
from tests import torchmodels


def _export(module: nn.Module, shape: tuple[int, ...]) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (torch.randn(1, *shape),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            do_constant_folding=False,
        )
    return onnx.load_from_string(buffer.getvalue())


def _conv_bn(c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


@torch.no_grad()
def _kill(block: nn.Module, channels: list[int]) -> None:
    """Make `channels` of a conv(+BN) output exactly zero, and rank them least important."""
    for module in block.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight[channels] = 0
            module.bias[channels] = 0
        elif isinstance(module, nn.Conv2d | nn.Linear):
            module.weight[channels] = 0
            if module.bias is not None:
                module.bias[channels] = 0


def _randomize_bn(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


def _assert_same_outputs(before: onnx.ModelProto, after: onnx.ModelProto) -> None:
    feed = random_feed(before)
    for old, new in zip(run_model(before, feed), run_model(after, feed), strict=True):
        np.testing.assert_allclose(new, old, atol=1e-5, rtol=1e-4)


def _all_layers(model: onnx.ModelProto, ratio: float = 0.5) -> dict[str, float]:
    return {n.name: ratio for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}


def _weight_shape(model: onnx.ModelProto, node_name: str, index: int = 1) -> tuple[int, ...]:
    node = next(n for n in model.graph.node if n.name == node_name)
    return tuple(next(t.dims for t in model.graph.initializer if t.name == node.input[index]))


class _Residual(nn.Module):
    """Stem, an identity block and a block with a 1x1 projection shortcut, pool, Gemm."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = _conv_bn(3, 8)
        self.b1c1 = _conv_bn(8, 8)
        self.b1c2 = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8))
        self.b2c1 = _conv_bn(8, 16, stride=2)
        self.b2c2 = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
        self.proj = nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16))
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16, 10)
        _randomize_bn(self)
        _kill(self.stem, [0, 2, 4, 6])  # the stem and block 1's output form one group
        _kill(self.b1c2, [0, 2, 4, 6])
        _kill(self.b1c1, [1, 3, 5, 7])
        _kill(self.b2c1, list(range(0, 16, 2)))
        _kill(self.b2c2, list(range(8)))  # block 2's conv and projection form one group
        _kill(self.proj, list(range(8)))

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(self.b1c2(self.b1c1(x)) + x)
        x = torch.relu(self.b2c2(self.b2c1(x)) + self.proj(x))
        x = nn.functional.adaptive_avg_pool2d(self.pool(x), 1)
        return self.fc(torch.flatten(x, 1))


class _Depthwise(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = _conv_bn(3, 8)
        self.dw = _conv_bn(8, 8, groups=8)
        self.pw = _conv_bn(8, 16, k=1)
        self.fc = nn.Linear(16, 10)
        _randomize_bn(self)
        _kill(self.stem, [0, 1, 2, 3])
        _kill(self.dw, [0, 1, 2, 3])  # the depthwise conv follows its input's channels
        _kill(self.pw, list(range(0, 16, 2)))

    def forward(self, x):
        x = self.pw(self.dw(self.stem(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class _ConcatFlatten(nn.Module):
    """Two branches concatenated, flattened straight into a Gemm (8x8 positions each)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = _conv_bn(3, 16)
        self.a = _conv_bn(16, 12, stride=2)
        self.b = _conv_bn(16, 4, k=1, stride=2)
        self.fc = nn.Linear(16 * 8 * 8, 10)
        _randomize_bn(self)
        _kill(self.stem, list(range(8)))
        _kill(self.a, [1, 3, 5, 7, 9, 11])
        _kill(self.b, [0, 3])

    def forward(self, x):
        x = self.stem(x)
        return self.fc(torch.flatten(torch.cat([self.a(x), self.b(x)], 1), 1))


@pytest.fixture(scope="module")
def residual() -> onnx.ModelProto:
    return _export(_Residual(), (3, 16, 16))


@pytest.fixture(scope="module")
def depthwise() -> onnx.ModelProto:
    return _export(_Depthwise(), (3, 16, 16))


@pytest.fixture(scope="module")
def concat() -> onnx.ModelProto:
    return _export(_ConcatFlatten(), (3, 16, 16))


def test_residual_add_groups_share_one_channel_selection(residual):
    pruned, report = prune_channels(residual, _all_layers(residual), importance="bn_scale")
    _assert_same_outputs(residual, pruned)
    coupled = {frozenset(g.layers) for g in report.groups if len(g.layers) > 1}
    assert len(coupled) == 2  # stem + block1.conv2, and block2.conv2 + projection
    assert _weight_shape(pruned, "/proj/proj.0/Conv") == (8, 4, 1, 1)


def test_classifier_output_is_never_cut(residual):
    pruned, report = prune_channels(residual, _all_layers(residual), importance="bn_scale")
    assert _weight_shape(pruned, "/fc/Gemm") == (10, 8)
    assert any(s.name == "/fc/Gemm" and "graph output" in s.reason for s in report.skipped)


def test_depthwise_conv_follows_its_input_channels(depthwise):
    pruned, _ = prune_channels(depthwise, _all_layers(depthwise), importance="bn_scale")
    _assert_same_outputs(depthwise, pruned)
    dw = next(n for n in pruned.graph.node if n.name == "/dw/dw.0/Conv")
    assert next(a.i for a in dw.attribute if a.name == "group") == 4
    assert _weight_shape(pruned, "/dw/dw.0/Conv") == (4, 1, 3, 3)


def test_ratio_on_a_depthwise_conv_applies_to_its_group(depthwise):
    pruned, report = prune_channels(depthwise, {"/dw/dw.0/Conv": 0.5}, importance="bn_scale")
    assert report.groups[0].layers == ("/stem/stem.0/Conv",)
    assert _weight_shape(pruned, "/stem/stem.0/Conv")[0] == 4
    _assert_same_outputs(depthwise, pruned)


def test_concat_offsets_and_flatten_blocks_reach_the_gemm(concat):
    pruned, _ = prune_channels(concat, _all_layers(concat), importance="bn_scale")
    _assert_same_outputs(concat, pruned)
    assert _weight_shape(pruned, "/fc/Gemm") == (10, (6 + 2) * 8 * 8)


def test_l1_and_l2_importance_give_valid_smaller_models(residual):
    for importance in ("l1", "l2"):
        pruned, report = prune_channels(residual, _all_layers(residual), importance=importance)
        assert report.macs_after < 0.35 * report.macs_before
        assert {g.importance for g in report.groups} == {importance}


def test_bn_scale_keeps_the_channels_with_the_largest_scale(residual):
    _, report = prune_channels(residual, {"/b1c1/b1c1.0/Conv": 0.5}, importance="bn_scale")
    assert report.groups[0].channels_after == 4


def _generated_chain() -> onnx.ModelProto:
    """Conv -> PRelu -> Mul/Add by per-channel constants -> ConvTranspose -> Reshape [1,-1]
    -> MatMul -> Add bias -> Relu -> Gemm(transB=0): dead channels 0..half in each layer."""
    rng = np.random.default_rng(0)

    def dead(shape, axis, count):
        array = rng.standard_normal(shape).astype(np.float32)
        np.moveaxis(array, axis, 0)[:count] = 0
        return array

    conv_w = dead((8, 3, 3, 3), 0, 4)
    convt_w = dead((8, 4, 2, 2), 0, 4)  # inputs from dead conv channels: zero (L1 ranking)
    np.moveaxis(convt_w, 1, 0)[:2] = 0
    matmul_w = dead((4 * 8 * 8, 6), 0, 2 * 8 * 8)  # rows of dead ConvTranspose channels
    matmul_w[:, :3] = 0
    gemm_w = dead((6, 5), 0, 3)
    tensors = {
        "conv_w": conv_w,
        "conv_b": dead((8,), 0, 4),
        "slope": rng.uniform(0.1, 0.3, (8, 1, 1)).astype(np.float32),
        "scale": rng.uniform(0.5, 1.5, (1, 8, 1, 1)).astype(np.float32),
        "shift": dead((8, 1, 1), 0, 4),
        "convt_w": convt_w,
        "convt_b": dead((4,), 0, 2),
        "target": np.array([1, -1], np.int64),
        "matmul_w": matmul_w,
        "matmul_b": dead((6,), 0, 3),
        "gemm_w": gemm_w,
        "gemm_b": rng.standard_normal(5).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], name="conv", pads=[1] * 4),
        helper.make_node("PRelu", ["c", "slope"], ["p"], name="prelu"),
        helper.make_node("Mul", ["p", "scale"], ["m"], name="mul"),
        helper.make_node("Add", ["m", "shift"], ["a"], name="add"),
        helper.make_node(
            "MaxPool", ["a"], ["mp"], name="pool", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node(
            "ConvTranspose", ["mp", "convt_w", "convt_b"], ["t"], name="convt", strides=[2, 2]
        ),
        helper.make_node("Reshape", ["t", "target"], ["r"], name="reshape"),
        helper.make_node("MatMul", ["r", "matmul_w"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "matmul_b"], ["mb"], name="bias"),
        helper.make_node("Relu", ["mb"], ["h"], name="relu"),
        helper.make_node("Gemm", ["h", "gemm_w", "gemm_b"], ["y"], name="gemm"),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(v, k) for k, v in tensors.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_prelu_constants_conv_transpose_reshape_matmul_and_gemm_are_cut_exactly():
    model = _generated_chain()
    pruned, report = prune_channels(model, _all_layers(model) | {"convt": 0.5})
    _assert_same_outputs(model, pruned)
    assert {g.layers[0]: g.channels_after for g in report.groups} == {
        "conv": 4,
        "convt": 2,
        "matmul": 3,
    }
    assert "bn_scale" not in {g.importance for g in report.groups}
    assert _weight_shape(pruned, "matmul") == (2 * 8 * 8, 3)


def test_bn_scale_without_batch_norm_falls_back_to_l1_and_says_so():
    model = _generated_chain()
    _, report = prune_channels(model, {"conv": 0.5}, importance="bn_scale")
    assert report.groups[0].importance == "l1"
    assert "no BatchNorm" in report.notes[0]


def _with_transpose(extra_conv: bool) -> onnx.ModelProto:
    """conv1 [-> relu -> conv2] -> Transpose (an op the surgery does not handle) -> output."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1] * 4)]
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1")]
    last = "c1"
    if extra_conv:
        nodes += [
            helper.make_node("Relu", ["c1"], ["r"], name="relu"),
            helper.make_node("Conv", ["r", "w2"], ["c2"], name="conv2", pads=[1] * 4),
        ]
        inits.append(
            numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "w2")
        )
        last = "c2"
    nodes.append(helper.make_node("Transpose", [last], ["t"], name="transpose", perm=[0, 2, 3, 1]))
    nodes.append(helper.make_node("Relu", ["t"], ["y"], name="out"))
    graph = helper.make_graph(
        nodes,
        "transpose",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_unhandled_op_gives_a_clear_error_and_leaves_the_model_intact():
    model = _with_transpose(extra_conv=False)
    before = model.SerializeToString()
    with pytest.raises(CompressionError, match="Transpose 'transpose'"):
        prune_channels(model, {"conv1": 0.5})
    assert model.SerializeToString() == before


def test_layers_behind_an_unhandled_op_are_skipped_while_others_are_cut():
    model = _with_transpose(extra_conv=True)
    pruned, report = prune_channels(model, {"conv1": 0.5, "conv2": 0.5})
    assert [(s.name, "Transpose" in s.reason) for s in report.skipped] == [("conv2", True)]
    assert _weight_shape(pruned, "conv2") == (8, 4, 3, 3)


def test_channel_groups_lists_coupled_layers_before_cutting(residual):
    groups = {layers: (size, why) for layers, size, why in channel_groups(residual)}
    assert groups[("/stem/stem.0/Conv", "/b1c2/b1c2.0/Conv")][0] == 8
    assert "graph output" in groups[("/fc/Gemm",)][1]


def test_generated_resnet_cuts_every_stage_and_runs(tmp_path):
    path = torchmodels.resnet18_style(tmp_path, input_size=32, width=8)
    model = onnx.load(path)
    pruned, report = prune_channels(model, _all_layers(model))
    # the 7x7 stem on 3 input channels dominates this tiny net; at 224/64 it is 0.25x
    assert report.macs_after <= 0.4 * report.macs_before
    assert report.params_after <= 0.35 * report.params_before
    assert len([g for g in report.groups if len(g.layers) > 1]) == 4  # one per stage


def test_trained_resnet_whose_export_shares_bn_biases_cuts_every_stage(tmp_path):
    # trained from zero, the two BN biases before each residual Add get the same gradients
    # and stay equal: the exporter keeps one, and the other BN reads it through an Identity
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 32, 32)).astype(np.float32)
    y = np.arange(16, dtype=np.int64) % 4
    path = torchmodels.trained_resnet18_style(
        tmp_path, x, y, epochs=1, width=8, batch_size=8, threads=1, log=lambda _: None
    )
    model = onnx.load(path)
    stored = {tensor.name for tensor in model.graph.initializer}
    biases = [n.input[2] for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert len([name for name in biases if name not in stored]) == 3  # one per downsample
    pruned, report = prune_channels(model, _all_layers(model))
    assert len([g for g in report.groups if len(g.layers) > 1]) == 4  # one per stage
    assert report.params_after <= 0.35 * report.params_before
    feed = {"input": x[:2]}
    assert run_model(pruned, feed)[0].shape == (2, 4)


def test_generated_concat_cnn_cuts_gemm_inputs_by_concat_blocks(tmp_path):
    model = onnx.load(torchmodels.small_cnn_with_concat(tmp_path))
    pruned, _ = prune_channels(model, _all_layers(model))
    assert _weight_shape(pruned, "/fc/Gemm") == (10, (6 + 2) * 8 * 8)


def test_kept_channels_can_be_rounded_to_a_hardware_multiple(residual):
    _, report = prune_channels(residual, {"/b2c1/b2c1.0/Conv": 0.7}, round_to=4)
    assert report.groups[0].channels_after == 4  # 16 * 0.3 = 4.8 -> a multiple of 4


def test_pad_and_resize_pass_channels_and_initializers_listed_as_inputs_follow():
    """Conv -> Pad (spatial) -> Resize (scales) -> Conv, with the weights also listed as graph
    inputs as old exporters do: their declared shapes must follow the cut."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    w1[:4] = 0
    w2 = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
    w2[:, :4] = 0
    inits = {
        "w1": w1,
        "w2": w2,
        "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
        "scales": np.array([1, 1, 2, 2], np.float32),
    }
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w1"], ["c"], name="conv1", pads=[1] * 4),
            helper.make_node("Pad", ["c", "pads"], ["p"], name="pad"),
            helper.make_node("Resize", ["p", "", "scales"], ["r"], name="resize"),
            helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2"),
        ],
        "pad_resize",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6]),
            *[
                helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape)
                for k, v in inits.items()
                if k.startswith("w")
            ],
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 14, 14])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    pruned, _ = prune_channels(model, {"conv1": 0.5})
    _assert_same_outputs(model, pruned)
    declared = next(v for v in pruned.graph.input if v.name == "w2")
    assert [d.dim_value for d in declared.type.tensor_type.shape.dim] == [6, 4, 3, 3]


def test_values_read_inside_an_if_branch_keep_their_channels():
    rng = np.random.default_rng(0)
    branch = helper.make_graph(
        [helper.make_node("Relu", ["c"], ["b"], name="inner")],
        "branch",
        [],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 8, 4, 4])],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1] * 4),
            helper.make_node(
                "If", ["flag"], ["y"], name="if", then_branch=branch, else_branch=branch
            ),
        ],
        "if_model",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 4])],
        [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(CompressionError, match="read inside If 'if'"):
        prune_channels(model, {"conv": 0.5})
