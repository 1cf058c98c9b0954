"""The generated test models are valid ONNX that onnxruntime runs, with the structure their
names promise (tests and benchmarks rely on it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests import torchmodels


def _run(path: Path, input_shape: tuple[int, ...]) -> np.ndarray:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    return session.run(None, {"input": x})[0]


def _op_types(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(path).graph.node]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("torchmodels")


@pytest.mark.parametrize(
    ("generator", "input_shape", "output_shape"),
    [
        (torchmodels.resnet18_style, (2, 3, 224, 224), (2, 1000)),
        (torchmodels.mobilenet_v1_style, (2, 3, 224, 224), (2, 1000)),
        (torchmodels.transformer_block, (2, 32, 64), (2, 32, 64)),
        (torchmodels.small_cnn_with_concat, (2, 3, 32, 32), (2, 10)),
    ],
)
def test_generated_model_is_valid_and_runs_with_dynamic_batch(
    generator: Callable[[Path], Path],
    input_shape: tuple[int, ...],
    output_shape: tuple[int, ...],
    folder: Path,
) -> None:
    path = generator(folder)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    (graph_input,) = model.graph.input
    assert graph_input.name == "input"
    assert graph_input.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert "Identity" not in _op_types(path)  # weights feed their nodes directly
    assert _run(path, input_shape).shape == output_shape


def test_resnet_keeps_bn_and_residual_adds_by_default(folder: Path) -> None:
    ops = _op_types(torchmodels.resnet18_style(folder, input_size=64))
    assert ops.count("BatchNormalization") == 20 and ops.count("Add") == 8


def test_resnet_with_folded_bn_computes_the_same(folder: Path) -> None:
    kept = torchmodels.resnet18_style(folder, input_size=64, width=16)
    fused = torchmodels.resnet18_style(folder, input_size=64, width=16, keep_bn=False)
    assert "BatchNormalization" not in _op_types(fused)
    expected = _run(kept, (2, 3, 64, 64))
    np.testing.assert_allclose(_run(fused, (2, 3, 64, 64)), expected, atol=1e-4, rtol=1e-4)


def test_mobilenet_has_13_depthwise_convs(folder: Path) -> None:
    model = onnx.load(torchmodels.mobilenet_v1_style(folder, input_size=96))
    groups = [
        attr.i
        for node in model.graph.node
        for attr in node.attribute
        if node.op_type == "Conv" and attr.name == "group" and attr.i > 1
    ]
    assert len(groups) == 13


def test_transformer_block_has_constant_weight_matmuls_and_attention(folder: Path) -> None:
    model = onnx.load(torchmodels.transformer_block(folder, seq=8, dim=32, heads=2))
    weights = {init.name for init in model.graph.initializer}
    ops = [node.op_type for node in model.graph.node]
    weight_matmuls = [
        n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights
    ]
    assert len(weight_matmuls) == 4
    assert ops.count("LayerNormalization") == 2 and "Softmax" in ops


def test_small_cnn_concat_feeds_flatten_then_gemm(folder: Path) -> None:
    nodes = onnx.load(torchmodels.small_cnn_with_concat(folder)).graph.node
    consumer = {name: node for node in nodes for name in node.input}
    concat = next(node for node in nodes if node.op_type == "Concat")
    flatten = consumer[concat.output[0]]
    assert flatten.op_type == "Flatten" and consumer[flatten.output[0]].op_type == "Gemm"


def test_generation_is_reproducible(tmp_path: Path) -> None:
    first = torchmodels.small_cnn_with_concat(tmp_path / "a.onnx").read_bytes()
    assert torchmodels.small_cnn_with_concat(tmp_path / "b.onnx").read_bytes() == first
