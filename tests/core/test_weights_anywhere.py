"""Weights wherever exports keep them (Constant nodes, subgraphs, behind a float16 Cast), and
models that are already quantized or at an old opset: every step reaches them or says why."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from compressor_gui.core import sensitivity as sens
from compressor_gui.core.compress import compress_job
from compressor_gui.core.data import dataset_from_arrays
from compressor_gui.core.errors import CompressionError
from compressor_gui.core.jobs import run_job
from compressor_gui.core.model import load_model
from compressor_gui.core.plan import CompressionPlan, LayerSetting
from compressor_gui.core.prune import prune_channels, prune_unstructured
from compressor_gui.core.quantize import quantize_model
from compressor_gui.core.weights import already_quantized, graphs, lift_weights
from tests import modelgen

LAYERS = ["/stem/conv/Conv", "/block2/conv1/Conv", "/fc/Gemm"]


pytestmark = pytest.mark.usefixtures("own_sweep_cache")


@pytest.fixture(scope="module")
def paddle_style(demo48, tmp_path_factory):
    """The demo with every weight in a Constant node, saved as a user would bring it."""
    path = tmp_path_factory.mktemp("paddle") / "paddle_demo.onnx"
    onnx.save(modelgen.as_constant_nodes(demo48[0]), str(path))
    return path


def _outputs(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize(
    "model",
    [
        modelgen.conv_in_if_branch(),
        modelgen.conv_in_if_branch(outer_constants=True),
        modelgen.float16_weight_conv(),
    ],
    ids=["if", "if-reading-outer-constants", "fp16"],
)
def test_lifted_weights_are_main_graph_initializers_and_compute_the_same(model):
    lifted = lift_weights(model)
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_outputs(lifted, x), _outputs(model, x), rtol=1e-5, atol=1e-5)
    main = {t.name: t.data_type for t in lifted.graph.initializer}
    swept = sens.swept_layers(model)
    convs = {n.name for g in graphs(model.graph) for n in g.node if n.op_type == "Conv"}
    assert {layer.name for layer in swept} == convs
    for layer in swept:
        assert main[layer.weight_name] == onnx.TensorProto.FLOAT


def test_constant_node_weights_sweep_like_initializers(demo48, paddle_style):
    model, dataset = demo48
    options = sens.options_named(["int4", "channel25"])

    def table(m):
        return run_job(sens.sensitivity_job(m, dataset, options=options, layers=LAYERS, workers=1))

    constant, initializer = table(onnx.load(str(paddle_style))), table(model)
    assert constant.layers == tuple(LAYERS) and not constant.skipped
    for ours, theirs in zip(constant.points, initializer.points, strict=True):
        assert (ours.layer, ours.option, ours.drop) == (theirs.layer, theirs.option, theirs.drop)
        assert ours.weight_sqnr_db == pytest.approx(theirs.weight_sqnr_db)


def test_a_sweep_measures_convs_inside_if_branches():
    model = modelgen.conv_in_if_branch()
    x = np.abs(np.random.default_rng(1).standard_normal((16, 4, 8, 8))).astype(np.float32)
    data = dataset_from_arrays({"x": x}, model)
    options = sens.options_named(["int1"])
    table = run_job(sens.sensitivity_job(model, data, options=options, workers=1))
    # positive inputs take the then-branch: only its conv changes the outputs
    assert table.point("then_conv", "int1").output_sqnr_db < 30
    assert table.point("else_conv", "int1").output_sqnr_db == 200.0


def test_int8_of_a_constant_weight_model_is_a_third_of_the_file(demo48, paddle_style, tmp_path):
    loaded = load_model(paddle_style)
    out = tmp_path / "int8.onnx"
    # u8u8 keeps full accuracy on every CPU family, and one named form builds once
    plan = CompressionPlan(default=LayerSetting(bits=8), int8_form="u8u8")
    result = run_job(compress_job(loaded, plan, out, demo48[1], latency=False))
    assert out.stat().st_size <= 0.35 * paddle_style.stat().st_size
    assert [a.bits for a in result.actions] == [8] * 12
    assert all("static" in a.method for a in result.actions)
    assert result.after.eval.top1 >= 0.97


def test_channel_pruning_of_a_constant_weight_model_folds_its_batch_norms(
    demo48, paddle_style, tmp_path
):
    loaded = load_model(paddle_style)
    out = tmp_path / "half.onnx"
    plan = CompressionPlan(default=LayerSetting(prune_ratio=0.5, prune_pattern="channel"))
    result = run_job(compress_job(loaded, plan, out, demo48[1], latency=False))
    assert any("11 BatchNorm folded" in step for step in result.steps)
    assert result.after.size_bytes < 0.4 * result.before.size_bytes
    names = {node.name for node in onnx.load(str(out)).graph.node}
    assert set(LAYERS) <= names


def test_subgraph_and_float16_weights_are_pruned_in_place_or_refused_with_a_reason():
    model = modelgen.conv_in_if_branch()
    pruned, report = prune_unstructured(model, {"then_conv": 0.5, "else_conv": 0.5})
    assert [round(layer.sparsity, 2) for layer in report.layers] == [0.5, 0.5]
    with pytest.raises(CompressionError, match="inside a subgraph"):
        prune_channels(model, {"then_conv": 0.5})
    fp16, report = prune_unstructured(modelgen.float16_weight_conv(), {"conv": 0.5})
    weight = onnx.numpy_helper.to_array(fp16.graph.initializer[0])
    assert weight.dtype == np.float16 and np.mean(weight == 0) == 0.5


def test_an_already_quantized_model_is_not_quantized_again(tmp_path):
    once = quantize_model(modelgen.conv(4, 8), CompressionPlan(default=LayerSetting(bits=8)))
    path = tmp_path / "int8.onnx"
    onnx.save(once.model, str(path))
    assert already_quantized(once.model) == {
        "conv": "already quantized (its weight comes from a DequantizeLinear)"
    }
    plan = CompressionPlan(default=LayerSetting(bits=8))
    job = compress_job(load_model(path), plan, tmp_path / "again.onnx", latency=False)
    with pytest.raises(CompressionError, match="already quantized .* no float layer left"):
        run_job(job)
    assert not (tmp_path / "again.onnx").exists()


def test_an_opset_11_model_gets_per_channel_int8_after_conversion(demo48):
    model, dataset = demo48
    old = onnx.ModelProto()
    old.CopyFrom(model)
    for node in old.graph.node:  # BatchNormalization-9 has no training_mode
        kept = [a for a in node.attribute if a.name != "training_mode"]
        del node.attribute[:]
        node.attribute.extend(kept)
    old.opset_import[0].version = 11
    result = quantize_model(old, CompressionPlan(default=LayerSetting(bits=8)), dataset)
    assert [o.version for o in result.model.opset_import if o.domain == ""] == [13]
    layers = [a for a in result.actions if a.op_type in ("Conv", "Gemm")]
    assert len(layers) == 12 and all(a.bits == 8 and "per-channel" in a.method for a in layers)
    assert any("opset 11 raised to 13" in w for w in result.warnings)
