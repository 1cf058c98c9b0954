"""Sensitivity: simulated changes, the fast pass, the measured sweep, cache and cancel."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from compressor_gui.core import sensitivity as sens
from compressor_gui.core.data import dataset_from_arrays
from compressor_gui.core.errors import CompressorError, JobCancelled
from compressor_gui.core.hardware import MachineInfo, local_machine
from compressor_gui.core.jobs import CancelToken, run_job
from compressor_gui.core.plan import LayerSetting
from tests import modelgen

pytestmark = pytest.mark.usefixtures("own_sweep_cache")


def _layer(model, name):
    return next(layer for layer in sens.swept_layers(model) if layer.name == name)


def _linear_data(model, count=32, labels=False):
    x = np.random.default_rng(1).standard_normal((count, 64)).astype(np.float32)
    arrays = {"x": x}
    if labels:
        arrays["y"] = np.zeros(count, np.int64)
    return dataset_from_arrays(arrays, model)


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
def test_simulated_weights_are_the_weights_the_quantized_model_runs_with(bits):
    import onnxruntime as ort

    from compressor_gui.core.plan import CompressionPlan
    from compressor_gui.core.quantize import quantize_model

    model = modelgen.conv(4, 8)
    weight = onnx.numpy_helper.to_array(model.graph.initializer[0])
    simulated = sens.simulate(weight, _layer(model, "conv"), LayerSetting(bits=bits))
    written = quantize_model(model, CompressionPlan(layers={"conv": LayerSetting(bits=bits)}))
    probe = written.model
    probe.graph.output.append(onnx.helper.make_tensor_value_info("W", 1, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 4, 32, 32), np.float32)
    ran_with = session.run(["W"], {"x": x})[0]
    assert not np.array_equal(ran_with, weight)
    np.testing.assert_allclose(simulated, ran_with, rtol=1e-6, atol=1e-7)


def test_two_of_four_keeps_two_of_every_four_inputs():
    model = modelgen.linear(64, 10)
    layer = _layer(model, "fc")
    weight = onnx.numpy_helper.to_array(model.graph.initializer[0])
    pruned = sens.simulate(weight, layer, LayerSetting(prune_ratio=0.5, prune_pattern="2:4"))
    assert ((pruned.reshape(10, 16, 4) != 0).sum(axis=2) == 2).all()


def test_channel_pruning_zeroes_the_lowest_l1_output_channels():
    model = modelgen.conv(4, 8)
    layer = _layer(model, "conv")
    weight = onnx.numpy_helper.to_array(model.graph.initializer[0])
    pruned = sens.simulate(weight, layer, LayerSetting(prune_ratio=0.25, prune_pattern="channel"))
    zeroed = np.flatnonzero(np.abs(pruned).sum(axis=(1, 2, 3)) == 0)
    assert sorted(zeroed) == sorted(np.argsort(np.abs(weight).sum(axis=(1, 2, 3)))[:2])


def test_fast_pass_orders_bit_widths_by_weight_sqnr():
    model = modelgen.linear(64, 10)
    layer = _layer(model, "fc")
    weight = onnx.numpy_helper.to_array(model.graph.initializer[0])
    points = [sens.fast_point(weight, layer, sens.OPTIONS_BY_NAME[n]) for n in ("int8", "int4")]
    assert points[0].weight_sqnr_db > points[1].weight_sqnr_db + 15
    assert points[0].proxy_noise < points[1].proxy_noise


def test_first_progress_is_the_fast_pass_then_one_point_per_step(demo48):
    model, dataset = demo48
    options = sens.options_named(["int8", "int1"])
    layers = ["/stem/conv/Conv", "/fc/Gemm"]
    job = sens.sensitivity_job(model, dataset, options=options, layers=layers, workers=2)
    first = next(job)
    assert isinstance(first.payload, sens.SensitivityTable)
    assert not any(p.measured for p in first.payload.points)
    steps = []
    table = run_job(job, steps.append)
    points = [s.payload for s in steps if s.payload is not None]
    assert len(points) == 4 and all(isinstance(p, sens.SensitivityPoint) for p in points)
    assert [s.message for s in steps if s.payload is None] == [
        "INT8 as onnxruntime runs it: calibrating"
    ]
    assert table.complete and table.metric == "top1"
    assert table.point("/fc/Gemm", "int8").how == f"onnxruntime INT8 {table.int8_form}"
    assert table.point("/fc/Gemm", "int1").how == "simulated"
    assert abs(table.point("/stem/conv/Conv", "int8").drop) <= 100 / 48 + 1e-9
    assert table.point("/stem/conv/Conv", "int1").output_sqnr_db < 20


def test_rerun_comes_from_the_cache_without_inference(demo48, monkeypatch):
    model, dataset = demo48
    kwargs = {"options": sens.options_named(["int4"]), "layers": ["/fc/Gemm"], "workers": 1}
    first = run_job(sens.sensitivity_job(model, dataset, **kwargs))

    def no_session(*args, **kwargs):
        raise AssertionError("the rerun built a session")

    monkeypatch.setattr(sens, "OverrideSession", no_session)
    again = run_job(sens.sensitivity_job(model, dataset, **kwargs))
    assert again.points == first.points and again.baseline == first.baseline


def test_int8_points_of_another_cpu_family_are_simulated_and_say_so(demo48):
    model, dataset = demo48
    here = local_machine()
    other = "avx512_vnni" if here.u8s8_saturates else "avx2"
    target = MachineInfo(here.arch, "another CPU", (other,), 2, 0)
    if target.isa_class == here.isa_class:
        pytest.skip(f"no other x86 family to stand for on {here.isa_class}")
    job = sens.sensitivity_job(
        model, dataset, options=sens.options_named(["int8"]), layers=["/fc/Gemm"], machine=target
    )
    table = run_job(job)
    assert table.point("/fc/Gemm", "int8").how == "simulated" and table.int8_form == ""
    assert "INT8 points simulated" in table.notes[0] and target.isa_class in table.notes[0]


def test_cache_of_one_cpu_family_is_not_read_on_another(demo48, monkeypatch):
    model, dataset = demo48
    kwargs = {"options": sens.options_named(["int4"]), "layers": ["/fc/Gemm"], "workers": 1}
    run_job(sens.sensitivity_job(model, dataset, **kwargs))
    moved = MachineInfo("x86_64", "elsewhere", ("avx512f", "amx_int8"), 2, 0, {"onnxruntime": "9"})
    monkeypatch.setattr(sens, "local_machine", lambda: moved)
    steps = []
    run_job(sens.sensitivity_job(model, dataset, **kwargs), steps.append)
    assert any(isinstance(s.payload, sens.SensitivityPoint) for s in steps)


def test_without_labels_the_metric_is_agreement_with_the_original():
    model = modelgen.linear(64, 10)
    table = run_job(sens.sensitivity_job(model, _linear_data(model), workers=1))
    assert table.metric == "agreement" and table.baseline == 1.0
    assert table.point("fc", "int8").drop < table.point("fc", "int1").drop + 1e-9


def test_cancel_stops_the_sweep():
    model = modelgen.linear(64, 10)
    cancel = CancelToken()
    job = sens.sensitivity_job(model, _linear_data(model), cancel=cancel, use_cache=False)
    next(job)
    cancel.cancel()
    with pytest.raises(JobCancelled):
        run_job(job)


def test_unknown_option_and_unsweepable_layer_are_explained():
    with pytest.raises(CompressorError, match="unknown sensitivity option"):
        sens.options_named(["int3"])
    with pytest.raises(CompressorError, match="1 LSTM cannot be swept"):
        sens.swept_layers(modelgen.lstm(), ["lstm"])
