"""The compress job: fuse -> quantize -> write -> evaluate, with progress and cancel."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from compressor_gui.core.compress import compress_job
from compressor_gui.core.errors import CompressionError, JobCancelled, PlanError
from compressor_gui.core.jobs import CancelToken, Progress, run_job
from compressor_gui.core.model import load_model
from compressor_gui.core.plan import CompressionPlan, LayerSetting
from tests import modelgen


@pytest.fixture(scope="module")
def int8_result(demo_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("compress") / "demo_int8.onnx"
    steps: list[Progress] = []
    plan = CompressionPlan(default=LayerSetting(bits=8))
    result = run_job(compress_job(load_model(demo_onnx), plan, out), steps.append)
    return result, steps


def test_demo_int8_is_written_smaller_and_as_accurate(int8_result):
    result, _ = int8_result
    onnx.checker.check_model(onnx.load(str(result.output_path)))
    assert result.after.size_bytes <= 0.30 * result.before.size_bytes
    assert result.before.eval.top1 - result.after.eval.top1 <= 0.01
    assert result.after.eval.cosine >= 0.99 and result.after.eval.agreement_top1 >= 0.99
    assert "held-out" in result.data_source


def test_fusion_runs_before_quantization(int8_result):
    result, _ = int8_result
    assert any(step.startswith("fused") for step in result.steps)
    assert not any("BatchNormalization" in a.op_type for a in result.actions)


def test_progress_reaches_the_end_and_latency_is_measured(int8_result):
    result, steps = int8_result
    assert steps[-1].fraction == 1.0
    assert result.before.latency.p50_ms > 0 and result.after.latency.p90_ms > 0


def test_result_serializes_to_json(int8_result):
    data = json.loads(json.dumps(int8_result[0].to_dict(), default=str))
    assert data["simulated"] is False and data["size_ratio"] <= 0.30


def test_simulated_bits_are_labelled(demo_onnx, tmp_path):
    plan = CompressionPlan(layers={"/block1/conv1/Conv": LayerSetting(bits=2)}, fuse=False)
    job = compress_job(load_model(demo_onnx), plan, tmp_path / "o.onnx", latency=False)
    result = run_job(job)
    assert result.simulated
    assert any("simulated: no runtime kernel" in w for w in result.warnings)


def test_cancel_stops_the_job_and_writes_nothing(demo_onnx, tmp_path):
    token = CancelToken()
    out = tmp_path / "never.onnx"
    job = compress_job(load_model(demo_onnx), CompressionPlan(), out, cancel=token)
    next(job)
    token.cancel()
    with pytest.raises(JobCancelled):
        run_job(job)
    assert not out.exists()


def test_plan_naming_a_missing_layer_fails_before_any_work(demo_onnx, tmp_path):
    plan = CompressionPlan(layers={"nope": LayerSetting(bits=8)})
    with pytest.raises(PlanError, match="nope"):
        run_job(compress_job(load_model(demo_onnx), plan, tmp_path / "o.onnx"))


def test_without_data_fidelity_is_measured_on_random_inputs(tmp_path):
    path = tmp_path / "attn.onnx"
    onnx.save(modelgen.attention_block(), str(path))
    plan = CompressionPlan(default=LayerSetting(bits=8), fuse=False)
    result = run_job(compress_job(load_model(path), plan, tmp_path / "o.onnx", latency=False))
    assert result.after.eval.top1 is None and result.after.eval.cosine > 0.98
    assert "random" in result.data_source


@pytest.mark.parametrize("bits", [32, 8])
def test_fusion_is_verified_on_the_job_data_when_random_inputs_cannot_run(tmp_path, bits):
    """At 8 bits also static INT8 of a layer whose output an If branch reads: onnxruntime's
    quantizer put the If before that layer ("not topologically sorted") and nothing was
    written."""
    path, data = tmp_path / "gated.onnx", tmp_path / "data.npz"
    onnx.save(modelgen.rate_gated_conv_bn(), str(path))
    x = np.random.default_rng(0).standard_normal((6, 4, 8, 8)).astype(np.float32)
    np.savez(data, x=x, rate=np.full(6, 16000, np.int64))
    plan = CompressionPlan(default=LayerSetting(bits=bits))
    result = run_job(compress_job(load_model(path), plan, tmp_path / "o.onnx", data, latency=False))
    assert any(step.startswith("fused: 1 BatchNorm folded") for step in result.steps)
    assert not any("fusion skipped" in warning for warning in result.warnings)
    assert result.after.eval.cosine > (0.9999 if bits == 32 else 0.999)
    if bits == 8:
        assert [a.method.split(" (")[0] for a in result.actions] == ["INT8 static QDQ"]


def test_unstructured_pruning_reports_the_deflated_size(demo_onnx, tmp_path):
    plan = CompressionPlan(default=LayerSetting(prune_ratio=0.9))
    result = run_job(
        compress_job(load_model(demo_onnx), plan, tmp_path / "p90.onnx", latency=False)
    )
    assert result.after.size_bytes > 0.9 * result.before.size_bytes  # zeros are still stored
    assert result.after.deflated_size_bytes <= 0.2 * result.before.size_bytes
    assert result.sparse_format_size_bytes is None


def test_two_four_pruning_reports_the_sparse_format_size(demo_onnx, tmp_path):
    plan = CompressionPlan(default=LayerSetting(prune_ratio=0.5, prune_pattern="2:4"))
    result = run_job(compress_job(load_model(demo_onnx), plan, tmp_path / "nm.onnx", latency=False))
    ratio = result.sparse_format_size_bytes / result.after.size_bytes
    assert 0.5 < ratio < 0.6  # kept halves + 2-bit indices, dense stem/depthwise/BN remain


def test_channel_pruning_sees_batchnorm_scales_before_fusion(demo_onnx, tmp_path):
    plan = CompressionPlan(
        default=LayerSetting(prune_ratio=0.25, prune_pattern="channel"), importance="bn_scale"
    )
    result = run_job(compress_job(load_model(demo_onnx), plan, tmp_path / "bn.onnx", latency=False))
    assert [s.split(":")[0] for s in result.steps][:2] == ["pruned", "fused"]
    assert not [w for w in result.warnings if "ranked by L1 instead" in w]


def test_pruning_that_leaves_the_file_no_smaller_is_refused_and_writes_nothing(tmp_path):
    path, out = tmp_path / "conv.onnx", tmp_path / "pruned.onnx"
    onnx.save(modelgen.conv(), str(path))  # no BatchNorm: fusion cannot shrink it either
    plan = CompressionPlan(default=LayerSetting(prune_ratio=0.5))
    with pytest.raises(CompressionError, match=r"1\.\d\dx the original, so nothing was written"):
        run_job(compress_job(load_model(path), plan, out, latency=False))
    assert not out.exists()
