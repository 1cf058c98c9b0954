"""The bundled demo model is real: accurate on its held-out split, worth compressing, and the
same network in ONNX and TorchScript form (resources/ is made by scripts/train_demo.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from compressor_gui.core.model import SHAPES_EXTRA_FILE

RESOURCES = Path(__file__).resolve().parents[2] / "resources"


@pytest.fixture(scope="module")
def demo_onnx() -> onnx.ModelProto:
    return onnx.load(RESOURCES / "demo.onnx")


@pytest.fixture(scope="module")
def eval_data() -> dict[str, np.ndarray]:
    with np.load(RESOURCES / "demo_eval.npz") as npz:
        return {name: npz[name] for name in npz.files}


@pytest.fixture(scope="module")
def onnx_logits(eval_data: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(RESOURCES / "demo.onnx", providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": eval_data["x"]})[0]


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def test_eval_split_is_preprocessed_digits(eval_data: dict[str, np.ndarray]) -> None:
    assert eval_data["x"].dtype == np.float32 and eval_data["x"].shape[1:] == (1, 32, 32)
    assert eval_data["y"].dtype == np.int64 and len(eval_data["y"]) == len(eval_data["x"])
    assert list(eval_data["class_names"]) == [str(i) for i in range(10)]


def test_onnx_reaches_97_percent_on_held_out_split(
    onnx_logits: np.ndarray, eval_data: dict[str, np.ndarray]
) -> None:
    assert onnx_logits.shape == (len(eval_data["y"]), 10)
    assert _accuracy(onnx_logits, eval_data["y"]) >= 0.97


def test_onnx_has_dynamic_batch_input_and_logits_output(demo_onnx: onnx.ModelProto) -> None:
    (graph_input,) = demo_onnx.graph.input
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert graph_input.name == "input" and dims == ["batch", 1, 32, 32]
    assert [o.name for o in demo_onnx.graph.output] == ["logits"]


def test_onnx_keeps_batchnorm_and_residual_adds(demo_onnx: onnx.ModelProto) -> None:
    ops = [node.op_type for node in demo_onnx.graph.node]
    assert ops.count("BatchNormalization") >= 5
    assert ops.count("Add") >= 2
    assert "/stem/conv/Conv" in {node.name for node in demo_onnx.graph.node}


def test_onnx_has_depthwise_conv(demo_onnx: onnx.ModelProto) -> None:
    weights = {init.name: init for init in demo_onnx.graph.initializer}
    depthwise = []
    for node in demo_onnx.graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv" and group > 1:
            out_channels, in_per_group = weights[node.input[1]].dims[:2]
            depthwise.append(group == out_channels and in_per_group == 1)
    assert depthwise and all(depthwise)


def test_onnx_weights_are_initializers(demo_onnx: onnx.ModelProto) -> None:
    weights = {init.name for init in demo_onnx.graph.initializer}
    for node in demo_onnx.graph.node:
        if node.op_type in {"Conv", "BatchNormalization", "Gemm"}:
            assert set(node.input[1:]) <= weights, node.name


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_matches_onnx(
    eval_data: dict[str, np.ndarray], onnx_logits: np.ndarray
) -> None:
    extra = {SHAPES_EXTRA_FILE: ""}
    module = torch.jit.load(RESOURCES / "demo.torchscript.pt", _extra_files=extra).eval()
    assert json.loads(extra[SHAPES_EXTRA_FILE]) == [[1, 1, 32, 32]]
    with torch.no_grad():
        logits = module(torch.from_numpy(eval_data["x"][:16])).numpy()
    np.testing.assert_allclose(logits, onnx_logits[:16], atol=1e-4, rtol=0)


def test_recorded_accuracy_is_current(
    onnx_logits: np.ndarray, eval_data: dict[str, np.ndarray]
) -> None:
    metadata = json.loads((RESOURCES / "demo.json").read_text())
    assert round(metadata["eval_accuracy"], 4) == round(_accuracy(onnx_logits, eval_data["y"]), 4)


def test_calibration_set_is_256_training_samples(eval_data: dict[str, np.ndarray]) -> None:
    with np.load(RESOURCES / "demo_calib.npz") as calib:
        x, y = calib["x"], calib["y"]
    assert x.shape == (256, 1, 32, 32) and y.shape == (256,)
    held_out = {row.tobytes() for row in eval_data["x"]}
    assert not any(row.tobytes() in held_out for row in x)
